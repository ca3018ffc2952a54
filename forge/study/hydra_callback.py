"""Write the study report into the sweep directory when a multirun ends.

Registered in `conf/experiment/far_study.yaml` under `hydra.callbacks`. Two moments:

- `on_multirun_end` (after every job returned, in the process that launched the sweep, also with
  the SLURM launcher): the normal case.
- `on_job_end` of the *last* job of a local sweep: Hydra's sweeper raises after the batch when any
  job failed, and then `on_multirun_end` never runs. The local launcher runs jobs one after another
  in this process, so when the last job ends every run directory is final: writing the report
  there means a sweep with failed runs still gets a report that lists them.

A report problem must never fail or hide the sweep's own result, so every error is caught and
printed (the root logger has no handler between runs, hence print) with the command to retry.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_dir_of(config: DictConfig) -> Path:
    """The sweep directory as the sweeper created it (relative paths are taken from the launch cwd)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if sweep_dir.is_absolute():
        return sweep_dir
    cwd = config.hydra.runtime.get("cwd") if "runtime" in config.hydra else None
    return Path(str(cwd)) / sweep_dir if cwd else Path.cwd() / sweep_dir


class StudyReportCallback(Callback):
    """metric: the metric key to report (None: the runs' primary metric)."""

    def __init__(self, metric: Optional[str] = None) -> None:
        self.metric = metric
        self.written: set[Path] = set()

    def _write(self, sweep_dir: Path) -> None:
        try:
            from forge.study.report import write_report

            files = write_report(sweep_dir, metric=self.metric, source=str(sweep_dir))
            self.written.add(sweep_dir)
            print(f"forge.study: wrote the study report {files.markdown} "
                  f"({len(files.analysis.study.problems)} run(s) not usable)", flush=True)
        except Exception:  # noqa: BLE001 - the report must never fail the sweep
            print(f"forge.study: could not write the study report for {sweep_dir} (the sweep itself is "
                  f"unaffected); retry with: python -m forge.study {sweep_dir}\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:  # noqa: D102
        try:
            if str(config.hydra.get("mode")).rsplit(".", 1)[-1] != "MULTIRUN":
                return  # a single run of a study's experiment (`launch.py experiment=qad_study arm=...`)
            if not str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher"):
                return  # remote launchers run this on the job's node: on_multirun_end writes the report
            from forge.study.grid import read_grid

            sweep_dir = sweep_dir_of(config)
            jobs = read_grid(sweep_dir).jobs
            if not jobs or int(config.hydra.job.num) != jobs[-1].num:
                return
        except Exception:  # noqa: BLE001
            print(f"forge.study: skipped the end-of-sweep report check:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            return
        self._write(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102
        try:
            sweep_dir = sweep_dir_of(config)
        except Exception:  # noqa: BLE001
            print(f"forge.study: could not find the sweep directory:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            return
        if sweep_dir not in self.written:  # already written after the last local job
            self._write(sweep_dir)
