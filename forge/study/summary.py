"""Turn the runs of a study into the numbers the report prints: one summary per arm, the gains over
the control arm, the factorial, the learning curves and the setup the runs share.

Kept apart from the writers (markdown, CSV, JSON, plots) so they all print the same numbers. The
unit of replication is the seed: an arm's runs with the same seed (only when the sweep also varies
another key) are averaged into one value first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np

from forge.study.factors import Factors
from forge.study.runs import Curve, ProblemRun, RunRecord, Study, dotted_get
from forge.study.stats import Estimate, Factorial, Gain, estimate, factorial_effects, gain_over

CONTROL_ARM = "ce"

# (label, dotted config key) of the setup table; a key whose value differs between runs says so.
SETUP_KEYS: tuple[tuple[str, str], ...] = (
    ("task", "task.name"),
    ("data", "task.data_dir"),
    ("train subset (max_train_samples)", "task.max_train_samples"),
    ("eval subset (max_eval_samples)", "task.max_eval_samples"),
    ("max_length", "task.max_length"),
    ("model", "model.name"),
    ("student", "model.student.name_or_path"),
    ("teacher", "model.teacher.name_or_path"),
    ("mode", "mode.name"),
    ("alpha", "alpha"),
    ("teacher strategy", "teacher_strategy.name"),
    ("teacher fine-tuning steps", "teacher_strategy.finetune_steps"),
    ("training steps (max_steps)", "trainer.max_steps"),
    ("batch size", "trainer.per_device_train_batch_size"),
    ("learning rate", "trainer.learning_rate"),
    ("eval every (eval_steps)", "trainer.eval_steps"),
)


@dataclass
class CurvePoint:
    step: int
    mean: float
    n: int


@dataclass
class ArmSummary:
    """An arm's numbers. values: seed -> metric (post student); gain: over the control arm (None for
    the control itself or without one); efficiency_n: runs with a defined transfer efficiency."""

    arm: str
    factors: Optional[Factors]
    values: dict[int, float]
    metric: Estimate
    gain: Optional[Gain]
    pre_mean: Optional[float]
    teacher_mean: Optional[float]
    student_gain_mean: Optional[float]
    efficiency_mean: Optional[float]
    efficiency_n: int
    duration_mean_s: Optional[float]
    curve: list[CurvePoint]
    problems: list[ProblemRun] = field(default_factory=list)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.values))


@dataclass
class Analysis:
    """What every writer reads. curve_kind: 'eval' (the periodic eval metric) or 'loss' (training
    loss), the same for every arm so the curves are comparable."""

    study: Study
    arms: list[ArmSummary]
    control: Optional[str]
    factorial: Optional[Factorial]
    factorial_note: Optional[str]
    cell_arms: dict[Factors, list[str]]
    curve_kind: str
    setup: list[tuple[str, str]]


def mean_and_count(values: Iterable[Optional[float]]) -> tuple[Optional[float], int]:
    kept = [float(v) for v in values if isinstance(v, (int, float))]
    return (float(np.mean(kept)) if kept else None), len(kept)


def _per_seed(records: list[RunRecord]) -> dict[int, float]:
    by_seed: dict[int, list[float]] = defaultdict(list)
    for record in records:
        by_seed[record.seed].append(record.value)
    return {seed: float(np.mean(v)) for seed, v in sorted(by_seed.items())}


def _mean_curve(curves: list[Curve]) -> list[CurvePoint]:
    at_step: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            at_step[step].append(value)
    return [CurvePoint(step, float(np.mean(v)), len(v)) for step, v in sorted(at_step.items())]


def _arm_factors(records: list[RunRecord]) -> Optional[Factors]:
    """The arm's cell; None if unknown or if its runs disagree (e.g. a `loss.attention=null` override
    on some seeds only), which keeps the arm out of the factorial."""
    found = {r.factors for r in records}
    return found.pop() if len(found) == 1 else None


def _arm_order(study: Study, arms: set[str]) -> list[str]:
    """Sweep order (as the sweeper listed the arms), then any other arm by name."""
    order: list[str] = []
    for grid in study.grids:
        for job in grid.jobs:
            if job.arm not in order:
                order.append(job.arm)
    return [a for a in order if a in arms] + sorted(arms - set(order))


def _control(arms: list[ArmSummary], study: Study) -> Optional[str]:
    """The arm the others are compared with: the runs' `study_control` (an experiment sets it, e.g.
    ptq_rtn in the QAD study), else `ce`, else the one arm without a distillation family."""
    names = {a.arm for a in arms}
    asked = Counter(c.get("study_control") for c in study.configs if c.get("study_control"))
    if asked and asked.most_common(1)[0][0] in names:
        return asked.most_common(1)[0][0]
    if CONTROL_ARM in names:
        return CONTROL_ARM
    no_family = [a.arm for a in arms if a.factors == Factors(False, False, False)]
    return no_family[0] if len(no_family) == 1 else None


def _setting(value: Any) -> str:
    return "null" if value is None else str(value)


def _setup(study: Study) -> list[tuple[str, str]]:
    rows = []
    for label, key in SETUP_KEYS:
        values = sorted({_setting(dotted_get(c, key)) for c in study.configs if c})
        if values:
            rows.append((label, values[0] if len(values) == 1 else "varies: " + ", ".join(values)))
    finished = sorted({r.seed for r in study.records})
    planned = sorted({j.seed for g in study.grids for j in g.jobs if j.seed is not None}
                     | {p.seed for p in study.problems if p.seed is not None} | set(finished))
    rows.append(("seeds (planned or started)", ", ".join(map(str, planned)) or "none"))
    rows.append(("metric", study.metric))
    return rows


def _factorial(arms: list[ArmSummary]) -> tuple[Optional[Factorial], Optional[str], dict[Factors, list[str]]]:
    cell_arms: dict[Factors, list[str]] = defaultdict(list)
    for summary in arms:
        if summary.factors is not None:
            cell_arms[summary.factors].append(summary.arm)
    shared = {cell: names for cell, names in cell_arms.items() if len(names) > 1}
    if shared:
        listed = "; ".join(f"{cell.label}: {', '.join(names)}" for cell, names in shared.items())
        return None, f"more than one arm falls in the same cell ({listed}); pick one arm per cell", dict(cell_arms)
    by_name = {a.arm: a for a in arms}
    cells = {cell: list(by_name[names[0]].values.values()) for cell, names in cell_arms.items()}
    result = factorial_effects(cells)
    note = None
    if not result.computable:
        note = "cells without a finished run: " + ", ".join(cell.label for cell in result.missing)
    return result, note, dict(cell_arms)


def analyse(study: Study) -> Analysis:
    """Summaries per arm, gains over the control arm, the factorial and the setup table."""
    by_arm: dict[str, list[RunRecord]] = defaultdict(list)
    for record in study.records:
        by_arm[record.arm].append(record)
    problems_by_arm: dict[Optional[str], list[ProblemRun]] = defaultdict(list)
    for problem in study.problems:
        problems_by_arm[problem.arm].append(problem)
    curve_kind = "eval" if study.records and all(r.eval_curve for r in study.records) else "loss"

    arms: list[ArmSummary] = []
    for arm in _arm_order(study, set(by_arm)):
        records = by_arm[arm]
        values = _per_seed(records)
        arms.append(ArmSummary(
            arm=arm, factors=_arm_factors(records), values=values, metric=estimate(list(values.values())),
            gain=None,
            pre_mean=mean_and_count(r.pre for r in records)[0],
            teacher_mean=mean_and_count(r.teacher for r in records)[0],
            student_gain_mean=mean_and_count(r.student_gain for r in records)[0],
            efficiency_mean=mean_and_count(r.transfer_efficiency for r in records)[0],
            efficiency_n=mean_and_count(r.transfer_efficiency for r in records)[1],
            duration_mean_s=mean_and_count(r.duration_s for r in records)[0],
            curve=_mean_curve([r.eval_curve if curve_kind == "eval" else r.loss_curve for r in records]),
            problems=problems_by_arm.get(arm, []),
        ))
    control = _control(arms, study)
    if control is not None:
        base = next(a for a in arms if a.arm == control).values
        for summary in arms:
            if summary.arm != control:
                summary.gain = gain_over(summary.values, base)
    factorial, note, cell_arms = _factorial(arms)
    return Analysis(study=study, arms=arms, control=control, factorial=factorial, factorial_note=note,
                    cell_arms=cell_arms, curve_kind=curve_kind, setup=_setup(study))


def cell_name(cell: Factors, cell_arms: dict[Factors, list[str]]) -> str:
    """'FA (combined_fa)', or the bare label for a cell no arm ran."""
    names = cell_arms.get(cell)
    return f"{cell.label} ({', '.join(names)})" if names else cell.label


def describe_problems(problems: list[ProblemRun]) -> list[dict[str, Any]]:
    """Problems as plain rows (JSON, markdown)."""
    return [{"run": p.name, "arm": p.arm, "seed": p.seed, "status": p.status, "reason": p.reason,
             "run_dir": str(p.run_dir) if p.run_dir else None} for p in problems]
