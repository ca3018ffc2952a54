"""Where a benchmark's figures land: the markdown table on the console and in `<out>/results.md`,
and its raw records in `<out>/results.json` when it has them (one place, so every script's
output directory looks the same)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional


def write_results(out: Path, table: str, payload: Optional[dict[str, Any]] = None) -> None:
    """Print `table`, write it to `out/results.md` and `payload` (JSON-able) to `out/results.json`."""
    print("\n" + table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table + "\n")
    if payload is not None:
        (out / "results.json").write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {out / 'results.md'}" + (" and results.json" if payload is not None else ""))
