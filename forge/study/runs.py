"""Read a study back from its run directories: one record per usable run, and every run that is not
usable (failed, interrupted, unfinished, unreadable, or expected but never started) with the reason.

The report is regenerated from files alone (no W&B, no network), and nothing is dropped silently:
a run that cannot contribute a number to the tables lands in `Study.problems`, which the report
prints. A run directory is a directory holding `config.yaml` (what `forge.run` writes first); the
walk does not descend into one (its `wandb/` holds a `config.yaml` of its own), nor into hidden
directories (`.submitit`, `.staging`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from forge.config.arm_names import arm_of
from forge.config.arm_names import dotted_value as dotted_get  # noqa: F401 (the study modules' name for it)
from forge.eval.transfer import transfer_gap
from forge.runtime import layout
from forge.runtime.layout import RunLayout
from forge.runtime.rundir import (
    STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, STATUS_RUNNING, read_json_object,
)
from forge.study.factors import Factors, run_factors
from forge.study.grid import MULTIRUN_FILE, SweepGrid, job_number, read_grid

STATUS_MISSING = "missing"
STATUS_UNREADABLE = "unreadable"

Curve = list[tuple[int, float]]


@dataclass
class RunRecord:
    """A finished run with a value for the study's metric.

    value: the student's post-training score; pre: before training; teacher: the teacher's
    post-training score (None without a teacher); student_gain, transfer_efficiency: as in
    `forge.eval.transfer` on this metric. eval_curve: (step, score) of the periodic evaluations
    (`trainer.eval_steps`), loss_curve: (step, training loss) per logging step.
    """

    run_dir: Path
    arm: str
    factors: Optional[Factors]
    seed: int
    status: str
    metric: str
    value: float
    pre: Optional[float]
    teacher: Optional[float]
    student_gain: Optional[float]
    transfer_efficiency: Optional[float]
    eval_curve: Curve = field(default_factory=list)
    loss_curve: Curve = field(default_factory=list)
    duration_s: Optional[float] = None
    config: dict[str, Any] = field(default_factory=dict)
    #: the direction of `metric` (metrics.json says it per metric; True when it does not)
    greater_is_better: bool = True
    #: every post-training student score (metric key -> value)
    scores: dict[str, Any] = field(default_factory=dict)
    #: a quantized run's side-by-side block (forge.eval.quantized_comparison), else None
    quantization: Optional[dict[str, Any]] = None

    @property
    def name(self) -> str:
        return self.run_dir.name


@dataclass(frozen=True)
class ProblemRun:
    """A run that gives no number: its status and why (the error, or what is missing)."""

    name: str
    arm: Optional[str]
    seed: Optional[int]
    status: str
    reason: str
    run_dir: Optional[Path] = None


@dataclass
class Study:
    """Everything the report is computed from."""

    root: Path
    metric: str
    records: list[RunRecord]
    problems: list[ProblemRun]
    configs: list[dict[str, Any]]
    grids: list[SweepGrid]
    notes: list[str] = field(default_factory=list)

    @property
    def greater_is_better(self) -> bool:
        """The study metric's direction (every finished run records it; higher unless they all say lower)."""
        return not self.records or any(r.greater_is_better for r in self.records)

    @property
    def n_run_dirs(self) -> int:
        return len(self.records) + sum(p.run_dir is not None for p in self.problems)


class NoRunsError(ValueError):
    """The path holds no run directory."""


def discover(root: Path) -> tuple[list[Path], list[Path]]:
    """(run directories, sweep directories holding multirun.yaml) under root, sorted."""
    root = Path(root)
    if (root / layout.CONFIG).is_file():
        return [root], []
    runs, sweeps = [], []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if layout.CONFIG in files and here != root:
            runs.append(here)
            dirs.clear()
            continue
        if MULTIRUN_FILE in files:
            sweeps.append(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(runs), sorted(sweeps)


def named_arm(config: Mapping[str, Any]) -> bool:
    """True when the run's arm is named by the study (`study_arm` or `study_arm_keys`) rather than
    being a loss cell of the FAR factorial."""
    return bool(config.get("study_arm") or config.get("study_arm_keys"))


def curves(log_history: list[Mapping[str, Any]], metric: str) -> tuple[Curve, Curve]:
    """(eval curve, training-loss curve) from Trainer's log history as training_state.json keeps it.

    Periodic evaluations are logged as `eval/<metric>` entries with their step
    (`forge.trainers.base.TaskEvalMixin`); training entries carry `loss`.
    """
    evals: dict[int, float] = {}
    losses: dict[int, float] = {}
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        if isinstance(entry.get(f"eval/{metric}"), (int, float)):
            evals[step] = float(entry[f"eval/{metric}"])
        if isinstance(entry.get("loss"), (int, float)):
            losses[step] = float(entry["loss"])  # a resumed run re-logs a step: the last one counts
    return sorted(evals.items()), sorted(losses.items())


def _progress(run_dir: Path) -> str:
    state = read_json_object(RunLayout(run_dir).training_state)
    if not state:
        return "no training_state.json (stopped before training began)"
    checkpoint = state.get("last_checkpoint") or "none"
    return f"reached step {state.get('global_step')}/{state.get('max_steps')}, last checkpoint {checkpoint}"


def _problem_reason(status: str, meta: Mapping[str, Any], run_dir: Path) -> str:
    if status == STATUS_FAILED:
        return str(meta.get("error") or "failed; run_metadata.json records no error (see output.log)")
    if status == STATUS_INTERRUPTED:
        return f"interrupted by {meta.get('interrupted_by') or 'a signal'}; {_progress(run_dir)}"
    if status == STATUS_RUNNING:
        return f"still running, or killed before it could record an end; {_progress(run_dir)}"
    return f"unexpected status '{status}'"


def read_run(run_dir: Path,
             metric: Optional[str]) -> tuple[Optional[RunRecord], Optional[ProblemRun], dict[str, Any]]:
    """(record, None, config) for a usable finished run, else (None, problem, config).

    metric: the metric key to read (None: the run's own primary metric).
    """
    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load(RunLayout(run_dir).config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        return None, ProblemRun(run_dir.name, None, None, STATUS_UNREADABLE,
                                f"config.yaml unreadable: {err}", run_dir), {}
    arm = arm_of(config)
    seed = config.get("seed") if isinstance(config.get("seed"), int) else None

    def problem(status: str, reason: str) -> tuple[None, ProblemRun, dict[str, Any]]:
        return None, ProblemRun(run_dir.name, arm, seed, status, reason, run_dir), config

    if arm is None or seed is None:
        return problem(STATUS_UNREADABLE, "config.yaml has no study_arm or loss.name, or no integer seed")
    meta = read_json_object(RunLayout(run_dir).metadata)
    if meta is None:
        return problem(STATUS_UNREADABLE, f"{layout.METADATA} missing or unreadable")
    status = str(meta.get("status", "unknown"))
    if status != STATUS_FINISHED:
        return problem(status, _problem_reason(status, meta, run_dir))
    metrics = read_json_object(RunLayout(run_dir).metrics)
    if metrics is None:
        return problem(STATUS_UNREADABLE, f"status finished but {layout.METRICS} is missing or unreadable")
    key = metric or str(metrics.get("primary_metric"))
    post = dotted_get(metrics, "post.student") or {}
    if not isinstance(post.get(key), (int, float)):
        return problem(STATUS_UNREADABLE, f"{layout.METRICS} has no post.student['{key}'] "
                                          f"(it has: {', '.join(sorted(post)) or 'nothing'})")
    pre = (dotted_get(metrics, "pre.student") or {}).get(key)
    teacher = (dotted_get(metrics, "post.teacher") or {}).get(key)
    greater = bool(metrics.get("greater_is_better", True)) if key == metrics.get("primary_metric") \
        else bool((metrics.get("greater_is_better_by_metric") or {}).get(key, True))
    gap = transfer_gap(key, student_pre=pre, student_post=float(post[key]), teacher_post=teacher,
                       greater_is_better=greater) if isinstance(pre, (int, float)) else None
    state = read_json_object(RunLayout(run_dir).training_state) or {}
    eval_curve, loss_curve = curves(state.get("log_history") or [], key)
    record = RunRecord(
        run_dir=run_dir, arm=arm, factors=None if named_arm(config) else run_factors(config, meta), seed=seed, status=status, metric=key,
        value=float(post[key]), pre=pre, teacher=teacher,
        student_gain=gap.student_gain if gap else None,
        transfer_efficiency=gap.transfer_efficiency if gap else None,
        eval_curve=eval_curve, loss_curve=loss_curve,
        duration_s=meta.get("duration_s"), config=config, greater_is_better=greater,
        scores=dict(post), quantization=metrics.get("quantization"),
    )
    return record, None, config


def _missing_jobs(grid: SweepGrid, run_dirs: list[Path]) -> list[ProblemRun]:
    present = {job_number(d.name) for d in run_dirs if d.parent == grid.sweep_dir}
    return [ProblemRun(job.run_name, job.arm, job.seed, STATUS_MISSING,
                       "no run directory: the job never started (its configuration was refused before "
                       "anything was written: see the sweep's console or SLURM log; the sweep stopped "
                       "before it; or it is still queued)")
            for job in grid.jobs if job.num not in present]


def _study_metric(run_dirs: list[Path]) -> str:
    """The most common primary metric among the finished runs (they normally all agree)."""
    found: Counter[str] = Counter()
    for run_dir in run_dirs:
        metrics = read_json_object(RunLayout(run_dir).metrics)
        if metrics and metrics.get("primary_metric"):
            found[str(metrics["primary_metric"])] += 1
    if not found:
        return "?"
    return found.most_common(1)[0][0]


def load_study(root: Path, metric: Optional[str] = None) -> Study:
    """Read every run (and every expected job) under root. Raises NoRunsError when there is none."""
    root = Path(root)
    run_dirs, sweep_dirs = discover(root)
    grids = [read_grid(d) for d in sweep_dirs]
    if not run_dirs:
        expected = sum(len(g.jobs) for g in grids)
        started = f" ({MULTIRUN_FILE} lists {expected} jobs; none has started)" if expected else ""
        raise NoRunsError(f"no run directories (directories with {layout.CONFIG}) under {root}{started}")
    key = metric or _study_metric(run_dirs)
    records, problems, configs = [], [], []
    for run_dir in run_dirs:
        record, problem, config = read_run(run_dir, key)
        configs.append(config)
        if record is not None:
            records.append(record)
        if problem is not None:
            problems.append(problem)
    for grid in grids:
        problems.extend(_missing_jobs(grid, run_dirs))
    notes = [f"{g.sweep_dir.name}: {g.note}" for g in grids if g.note]
    arm_keys = {k for c in configs for k in (c.get("study_arm_keys") or [])}
    other_keys = sorted({k for g in grids for k in g.swept_keys} - {"loss", "seed", "arm"} - arm_keys)
    if other_keys:
        notes.append(f"the sweep also varies {', '.join(other_keys)}: runs of one arm and seed that differ "
                     "only there are averaged into one value per seed (to compare them as arms, name them in "
                     "study_arm_keys)")
    unknown = sorted({r.arm for r in records if r.factors is None and not named_arm(r.config)})
    if unknown:
        notes.append(f"arms {', '.join(unknown)}: their loss families could not be told from the config; "
                     "they are left out of the factorial")
    return Study(root=root, metric=key, records=records, problems=problems, configs=configs,
                 grids=grids, notes=notes)
