"""Where a run lives and the files that describe it.

Layout: `<output_root>/<task>/<model>/<mode>/<loss>/<timestamp>/`. The directory is created only
after the config has been validated, so bad input never leaves a directory behind. A run's status
lives in `run_metadata.json` (`running` → `finished` | `failed` | `interrupted`); `metrics.json` and
`final/` are written only by a run that finished, so a failed run never looks like a good one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"


def default_run_dir(cfg: DictConfig, now: _dt.datetime | None = None) -> Path:
    """`<output_root>/<task>/<model>/<mode>/<loss>/<timestamp>`; a numeric suffix avoids clashes."""
    stamp = (now or _dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    base = Path(cfg.output_root) / cfg.task.name / cfg.model.name / cfg.mode.name / cfg.loss.name
    candidate = base / stamp
    suffix = 1
    while candidate.exists():
        candidate = base / f"{stamp}_{suffix}"
        suffix += 1
    return candidate


def resolve_run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.run_dir) if cfg.get("run_dir") else default_run_dir(cfg)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_resolved_config(run_dir: Path, cfg: DictConfig) -> None:
    """`config.yaml`: the fully resolved config (no interpolations left), secrets redacted."""
    from forge.runtime.secrets import redact

    container = OmegaConf.to_container(cfg, resolve=True)
    text = OmegaConf.to_yaml(OmegaConf.create(redact(container)))
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, run_dir / "config.yaml")
