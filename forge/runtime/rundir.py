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
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from forge.runtime.layout import RunLayout

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"


def run_base(cfg: DictConfig) -> Path:
    return Path(cfg.output_root) / cfg.task.name / cfg.model.name / cfg.mode.name / cfg.loss.name


def default_run_dir(cfg: DictConfig, now: _dt.datetime | None = None) -> Path:
    """`<output_root>/<task>/<model>/<mode>/<loss>/<timestamp>`.

    Only picks a name; `claim_run_dir` creates it atomically and adds a numeric suffix on a clash,
    so two jobs starting in the same second never share one.
    """
    stamp = (now or _dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    return run_base(cfg) / stamp


def slurm_task_key() -> str | None:
    """A name for this SLURM task that survives requeues (job ids do; timestamps do not)."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _slurm_pointer(cfg: DictConfig, key: str) -> Path:
    return run_base(cfg) / f".slurm-job-{key}"


def _previous_slurm_run_dir(cfg: DictConfig) -> Path | None:
    """The run directory an earlier attempt of this SLURM task claimed, if any."""
    key = slurm_task_key()
    if not key:
        return None
    pointer = _slurm_pointer(cfg, key)
    if pointer.is_file():
        previous = Path(pointer.read_text(encoding="utf-8").strip())
        if previous.is_dir():
            return previous
    return None


def resolve_run_dir(cfg: DictConfig) -> Path:
    """`run_dir` if set; else the directory this SLURM task used before a requeue; else a new one.

    A requeued SLURM job re-runs the same command, which would otherwise pick a new timestamp and
    start over: the first attempt leaves `<base>/.slurm-job-<id>` naming its run directory, and
    the requeued attempt follows it.
    """
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    return _previous_slurm_run_dir(cfg) or default_run_dir(cfg)


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """Create the run directory (a timestamped one atomically, with a new suffix on a clash)."""
    run_dir = Path(run_dir)
    if cfg.get("run_dir") or run_dir == _previous_slurm_run_dir(cfg):  # continuing this run
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix = run_dir.name, 0
        while True:
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                suffix += 1
                run_dir = run_dir.with_name(f"{stem}_{suffix}")
    key = slurm_task_key()
    if key and not cfg.get("run_dir"):
        pointer = _slurm_pointer(cfg, key)
        tmp = pointer.with_name(pointer.name + ".tmp")
        tmp.write_text(str(run_dir.resolve()), encoding="utf-8")
        os.replace(tmp, pointer)
    return run_dir


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


def read_json_object(path: Path) -> Optional[dict[str, Any]]:
    """A JSON object from `path`, or None when it is missing, unreadable or not an object (readers
    of run directories must survive a run killed mid-write or a file from another version)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_resolved_config(run_dir: Path, cfg: DictConfig) -> None:
    """`config.yaml`: the fully resolved config (no interpolations left), secrets redacted."""
    from forge.runtime.secrets import redact

    container = OmegaConf.to_container(cfg, resolve=True)
    text = OmegaConf.to_yaml(OmegaConf.create(redact(container)))
    tmp = Path(run_dir) / f".{RunLayout(run_dir).config.name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, RunLayout(run_dir).config)
