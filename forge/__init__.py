"""Forge: Hydra-composed SFT / KD / GKD / GRPO training of transformer models.

`forge.run(cfg)` is the whole pipeline; it takes a composed config (from Hydra or `forge.config.compose`)
and needs no Hydra runtime, so tests and notebooks call it directly.
"""

from __future__ import annotations

from typing import Any


def run(cfg: Any) -> dict:
    """Run one experiment described by a composed config; returns the final metrics dict."""
    from forge.pipeline import run as _run

    return _run(cfg)


def open_run(path: Any) -> Any:
    """A finished or interrupted run, read back from its directory (`forge.run_view.RunView`)."""
    from forge.run_view import open_run as _open_run

    return _open_run(path)


__all__ = ["open_run", "run"]
