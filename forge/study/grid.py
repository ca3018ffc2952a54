"""The jobs a sweep was asked to run, read back from Hydra's `multirun.yaml`.

A job that never started leaves no run directory, so the run directories alone cannot say what is
missing. `multirun.yaml` holds the sweeper's `params` (from the experiment file) and the command
line's overrides; Hydra's BasicSweeper (used by the local and the SLURM launcher) appends the
command line to the params, keeps the last value given for each key and runs the Cartesian
product in key order, numbering jobs from 0. Repeating that here gives every job's number, arm
(the `arm` option, else the loss option, then the values of `study_arm_keys`) and seed, and
launch.py names its run directory
`<number:03d>_<arm>_seed<seed>`,
so an expected job with no `<number>_*` directory never started.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from forge.config.arm_names import arm_label, dotted_value

log = logging.getLogger("forge.study")

MULTIRUN_FILE = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class ExpectedJob:
    """One job of the sweep as submitted: its number, arm (`arm` option, else loss option) and seed."""

    num: int
    arm: str
    seed: Optional[int]

    @property
    def run_name(self) -> str:
        """The run directory name launch.py gives this job (`forge.config.launcher.sweep_run_dir`)."""
        return f"{self.num:03d}_{self.arm}_seed{self.seed}"


@dataclass(frozen=True)
class SweepGrid:
    """The expected jobs of one sweep directory; `note` says why they could not be enumerated."""

    sweep_dir: Path
    jobs: tuple[ExpectedJob, ...]
    swept_keys: tuple[str, ...] = ()
    note: Optional[str] = None


def _as_int(value: Any) -> Optional[int]:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _sweep_values(overrides: list[str]) -> dict[str, list[str]]:
    """key -> the values it takes, as BasicSweeper.split_arguments computes them (last one wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    final: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ValueError(f"'{key}' is a continuous sweep (interval): BasicSweeper cannot run it")
            final[key] = list(override.sweep_string_iterator())
        else:
            final[key] = [override.get_value_element_as_str()]
    return final


def _plain_key(key: str) -> str:
    return key.lstrip("+~")


def read_grid(sweep_dir: Path) -> SweepGrid:
    """Enumerate the jobs of the sweep in `sweep_dir` (which holds multirun.yaml)."""
    sweep_dir = Path(sweep_dir)
    try:
        multirun = yaml.safe_load((sweep_dir / MULTIRUN_FILE).read_text(encoding="utf-8")) or {}
        hydra_cfg: Mapping[str, Any] = multirun.get("hydra") or {}
        sweeper = hydra_cfg.get("sweeper") or {}
        if sweeper.get("_target_") not in (None, BASIC_SWEEPER):
            return SweepGrid(sweep_dir, (), note=f"sweeper {sweeper.get('_target_')} is not Hydra's basic "
                                                  "sweeper: its jobs cannot be enumerated")
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        command_line = list((hydra_cfg.get("overrides") or {}).get("task") or [])
        values = _sweep_values(params + command_line)
    except Exception as err:  # noqa: BLE001 - a broken multirun.yaml must not hide the runs themselves
        log.warning("Could not enumerate the jobs of %s: %s", sweep_dir, err)
        return SweepGrid(sweep_dir, (), note=f"{MULTIRUN_FILE} could not be read ({type(err).__name__}: {err})")

    keys = list(values)
    plain = [_plain_key(k) for k in keys]
    choices = (hydra_cfg.get("runtime") or {}).get("choices") or {}
    arm_key = "arm" if "arm" in plain or choices.get("arm") else "loss"
    default_arm = str(choices.get(arm_key, "?"))
    default_seed = multirun.get("seed")
    arm_keys = [str(k) for k in (multirun.get("study_arm_keys") or [])]
    fixed_arm = multirun.get("study_arm")  # an experiment's own arm name (beats the loss, as in launch.py)
    jobs = []
    for num, combo in enumerate(itertools.product(*(values[k] for k in keys))):
        chosen = dict(zip(plain, combo))
        settings = [(k, chosen[k] if k in chosen else dotted_value(multirun, k)) for k in arm_keys]
        base = chosen.get(arm_key, default_arm) if arm_key == "arm" or not fixed_arm else fixed_arm
        jobs.append(ExpectedJob(num=num, arm=arm_label(str(base), settings),
                                seed=_as_int(chosen.get("seed", default_seed))))
    swept = tuple(p for p, k in zip(plain, keys) if len(values[k]) > 1)
    return SweepGrid(sweep_dir, tuple(jobs), swept_keys=swept)


def job_number(run_dir_name: str) -> Optional[int]:
    """The job number a sweep run directory's name starts with (`007_combined_fa_seed2` -> 7)."""
    head, _, rest = run_dir_name.partition("_")
    return int(head) if head.isdigit() and rest else None
