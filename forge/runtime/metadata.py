"""`run_metadata.json`: enough to reproduce and audit a run (git commit, versions, host, seed,
times, device, status). Written at start with status `running` and rewritten at the end."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from forge.runtime.layout import RunLayout
from forge.runtime.rundir import STATUS_RUNNING, write_json_atomic

_PACKAGES = (
    "torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core", "omegaconf",
    "hydra-submitit-launcher", "scikit-learn", "sacrebleu", "wandb",
)


def git_commit(repo: Path) -> dict[str, Any]:
    """Commit hash and whether the work tree had uncommitted changes (None outside a repo)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": "cuda" if torch.cuda.is_available() else "cpu",
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunMetadata:
    """Owns run_metadata.json; `update()` rewrites it atomically.

    A resumed run (requeue, relaunch with the same run_dir) keeps its first start time and gains
    one entry in `attempts` per launch, so the file tells how often it was preempted and where
    each attempt continued from. `duration_s` sums the attempts' wall times.
    """

    def __init__(self, run_dir: Path, *, seed: int, repo_root: Path, resumed_from: str | None = None) -> None:
        from forge.runtime.rundir import read_json
        from forge.runtime.secrets import redact_argv

        self.path = RunLayout(run_dir).metadata
        previous: dict[str, Any] = {}
        if self.path.is_file():
            try:
                previous = read_json(self.path)
            except (OSError, ValueError):
                previous = {}
        start = now_iso()
        attempt = {
            "start_time": start,
            "end_time": None,
            "status": STATUS_RUNNING,
            "resumed_from": resumed_from,
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
            "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
        }
        self._previous_duration = float(previous.get("duration_s") or 0.0)
        self.data: dict[str, Any] = {
            "status": STATUS_RUNNING,
            "run_dir": str(Path(run_dir).resolve()),
            "seed": seed,
            "start_time": previous.get("start_time", start),
            "end_time": None,
            "duration_s": previous.get("duration_s"),
            "git": git_commit(repo_root),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "device": device_description(),
            "argv": redact_argv(sys.argv),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "attempts": list(previous.get("attempts", [])) + [attempt],
        }
        self._t0 = _dt.datetime.now(_dt.timezone.utc)
        self.update()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        write_json_atomic(self.path, self.data)

    def finish(self, status: str, **fields: Any) -> None:
        elapsed = (_dt.datetime.now(_dt.timezone.utc) - self._t0).total_seconds()
        end = now_iso()
        self.data["attempts"][-1].update(end_time=end, status=status, duration_s=round(elapsed, 2))
        self.update(status=status, end_time=end, duration_s=round(self._previous_duration + elapsed, 2), **fields)
