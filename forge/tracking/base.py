"""The `Tracker` interface every backend implements, and the process gate around it.

The public methods live here, once: they keep non-main ranks silent, drop non-numeric metrics and
flatten summaries, then call the backend's `_start/_log/_summary/_finish` hooks. A backend only
talks to its service; `NullTracker` (logger=none) is the base class with empty hooks.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Mapping

from forge.runtime.ranks import is_main_process
from forge.runtime.secrets import redact

STATUSES = frozenset({"finished", "failed", "interrupted"})


def as_number(value: Any) -> int | float | None:
    """A real number, or None. 1-element tensors/arrays are unwrapped; bools are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return value if isinstance(value, int) else float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            inner = item()  # raises for multi-element tensors and arrays
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(inner, (bool, str)) or not isinstance(inner, numbers.Real):
            return None
        return as_number(inner)
    return None


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, int | float]:
    """Keep only real numbers: a metrics chart cannot plot strings, and wandb would store them."""
    out: dict[str, int | float] = {}
    for key, value in metrics.items():
        number = as_number(value)
        if number is not None:
            out[str(key)] = number
    return out


def flatten(values: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """`{"eval": {"pre": {"acc": 1}}}` -> `{"eval/pre/acc": 1}`: one summary column per leaf."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _summary_value(value: Any) -> Any:
    """JSON-safe leaf: numbers, strings, None and flat lists as they are, anything else as text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    number = as_number(value)
    if number is not None:
        return number
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return str(value)


def plain(value: Any) -> Any:
    """A copy made of dicts and lists only, so `redact` sees every nested key (DictConfig included)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:
        pass
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Tracker:
    """Base tracker; does nothing by itself. Subclasses override the `_hooks`, not the public API."""

    def __init__(self, name: str = "none") -> None:
        self.name = name
        self._active = False

    @property
    def active(self) -> bool:
        """True between a `start` on the main process and `finish`."""
        return self._active

    def start(
        self,
        run_dir: Path,
        config: dict,
        *,
        name: str,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Open the run. A no-op on non-main ranks, so callers need no rank checks of their own."""
        if not is_main_process():
            self._active = False
            return
        self._start(Path(run_dir), redact(plain(config)), name=name, group=group, tags=list(tags or []))
        self._active = True

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record numeric metrics at a training step; non-numeric values are skipped."""
        if not self._active:
            return
        clean = numeric_metrics(metrics)
        if clean:
            self._log(clean, int(step))

    def summary(self, values: dict) -> None:
        """Set run-level results (pre/post/transfer gap); nested dicts become `a/b/c` keys."""
        if not self._active:
            return
        flat = {k: _summary_value(v) for k, v in flatten(redact(plain(values))).items()}
        if flat:
            self._summary(flat)

    def finish(self, status: str) -> None:
        """Close the run with `finished`, `failed` or `interrupted`; safe to call twice."""
        if status not in STATUSES:
            raise ValueError(f"tracker status must be one of {sorted(STATUSES)}, got {status!r}")
        if not self._active:
            return
        self._active = False
        self._finish(status)

    # Backend hooks: called only on the main process, with cleaned arguments.
    def _start(self, run_dir: Path, config: dict, *, name: str, group: str | None, tags: list[str]) -> None:
        pass

    def _log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def _summary(self, values: dict[str, Any]) -> None:
        pass

    def _finish(self, status: str) -> None:
        pass


class NullTracker(Tracker):
    """logger=none: accepts every call, writes nothing anywhere."""

    def __init__(self, name: str = "none") -> None:
        super().__init__(name=name)
