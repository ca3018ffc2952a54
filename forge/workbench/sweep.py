"""The workbench across a sweep: did the feature and attention losses align what they targeted, and
does alignment predict the gain over `ce`?

Each run's own workbench (`<run_dir>/workbench/workbench.json`) says how close its student's mapped
layers are to the teacher's (mean mapped-layer CKA, before and after training) and which layer a probe
reads the task best from. One run cannot say whether a loss *caused* that alignment, nor whether
alignment buys accuracy; only the comparison across arms and seeds can. So this module joins those
files with the study's own reading of the sweep (`forge.study.runs.load_study`, `forge.study.summary.
analyse`: the same runs, arms, seeds, control arm and F/A/R cells as the FAR report, never a second
parser) and reports:

- per arm: mapped-layer CKA (student, initial, change), the most common best probe layer and its mean
  accuracy, the mean gain over `ce`, and the CKA difference to `ce` paired by seed (`stats.gain_over`);
- per run: alignment (the student's mean mapped CKA) and gain (its metric − the same seed's `ce` run);
- Pearson r of alignment and gain over the distillation runs (`ce` left out: its gain is 0 by
  construction), with a seeded percentile bootstrap over runs.

Which arms carry a feature or attention loss comes from their resolved loss config
(`forge.study.factors`), not from their names. A finished run without a workbench.json is listed as
missing, never dropped silently.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from forge.runtime.rundir import read_json_object
from forge.study.factors import Factors
from forge.study.runs import RunRecord, discover, dotted_get, load_study
from forge.study.stats import LEVEL, RNG_SEED, Gain, Interval, gain_over
from forge.study.summary import Analysis, ArmSummary, analyse, describe_problems, mean_and_count
from forge.workbench.report import JSON_NAME, WORKBENCH_DIR

MARKDOWN = "workbench_sweep.md"
JSON = "workbench_sweep.json"
SCATTER_PNG = "alignment_vs_gain.png"
N_CORR_BOOT = 2000
MIN_POINTS = 3


def workbench_file(run_dir: Path) -> Path:
    return Path(run_dir) / WORKBENCH_DIR / JSON_NAME


def load_workbench(root: Path) -> dict[Path, dict]:
    """run dir -> its workbench.json, for every run directory under root that has a readable one."""
    found = {run_dir: read_json_object(workbench_file(run_dir)) for run_dir in discover(Path(root))[0]}
    return {run_dir: data for run_dir, data in found.items() if data is not None}


def _finite(value: Any) -> Optional[float]:
    """A float, or None for a missing, null, non-numeric or NaN value (a skipped analysis)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class RunPoint:
    """One run with a workbench.json. gain: metric − the control's same-seed value (None without one)."""

    run: str
    arm: str
    seed: int
    value: float
    alignment: Optional[float]
    initial: Optional[float]
    gain: Optional[float]
    probe_layer: Optional[int]
    probe_accuracy: Optional[float]


@dataclass(frozen=True)
class ArmView:
    """An arm's workbench numbers; cka_over_control: its per-seed CKA − the control's, paired by seed."""

    arm: str
    factors: Optional[Factors]
    runs: int
    with_workbench: int
    cka_student: Optional[float]
    cka_initial: Optional[float]
    cka_change: Optional[float]
    probe_layer: Optional[int]
    probe_layer_runs: int
    probe_accuracy: Optional[float]
    gain: Optional[float]
    cka_over_control: Optional[Gain]


@dataclass(frozen=True)
class Correlation:
    """Pearson r of alignment and gain over n runs; r None with a reason when it cannot be computed."""

    n: int
    r: Optional[float]
    boot: Optional[Interval]
    n_boot: int
    reason: Optional[str] = None


@dataclass
class SweepView:
    """Everything the sweep's workbench files are written from (`to_json` is the JSON file's body)."""

    root: Path
    metric: str
    greater_is_better: bool
    control: Optional[str]
    arms: list[ArmView]
    runs: list[RunPoint]
    correlation: Correlation
    missing: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.root), "metric": self.metric, "greater_is_better": self.greater_is_better,
                "control": self.control, "arms": [_arm_json(a) for a in self.arms],
                "runs": [asdict(p) for p in self.runs], "correlation": _correlation_json(self.correlation),
                "missing": self.missing, "problems": self.problems}


def _interval(ci: Optional[Interval]) -> Optional[list[float]]:
    return None if ci is None else [ci.lo, ci.hi]


def _arm_json(arm: ArmView) -> dict[str, Any]:
    row = {k: v for k, v in asdict(arm).items() if k not in ("factors", "cka_over_control")}
    f, over = arm.factors, arm.cka_over_control
    row.update({"F": f.F if f else None, "A": f.A if f else None, "R": f.R if f else None})
    row["cka_over_control"] = None if over is None else {
        "mean": over.estimate.mean, "n": over.estimate.n, "paired": over.paired,
        "boot": _interval(over.estimate.boot), "t": _interval(over.estimate.t)}
    return row


def _correlation_json(c: Correlation) -> dict[str, Any]:
    return {"n": c.n, "r": c.r, "boot": _interval(c.boot), "n_boot": c.n_boot, "reason": c.reason,
            "excludes_zero": c.boot.excludes_zero if c.boot else None}


def pearson(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Pearson r; None when either side has no spread (r is undefined)."""
    xc, yc = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    denom = float(np.sqrt(np.sum(xc ** 2) * np.sum(yc ** 2)))
    return None if denom == 0 else float(np.sum(xc * yc) / denom)


def correlate(x: Sequence[float], y: Sequence[float], *, n_boot: int = N_CORR_BOOT,
              seed: int = RNG_SEED) -> Correlation:
    """r with a percentile bootstrap 95% interval over points (pairs resampled together). Resamples
    that repeat one point only (no spread) have no r and are left out of the interval."""
    xs, ys, n = np.asarray(x, float), np.asarray(y, float), len(x)
    if n < MIN_POINTS:
        return Correlation(n, None, None, 0, f"{n} run(s) with both an alignment and a gain; need {MIN_POINTS}")
    r = pearson(xs, ys)
    if r is None:
        return Correlation(n, None, None, 0, "alignment or gain is the same in every run (r undefined)")
    distinct = min(len(np.unique(xs)), len(np.unique(ys)))
    if distinct < MIN_POINTS:  # e.g. every gain 0 but one: r is that one run, and a bootstrap cannot say so
        return Correlation(n, r, None, 0, f"one variable takes only {distinct} distinct value(s) over the {n} runs, "
                                          "so r rests on single runs")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    xc = xs[idx] - xs[idx].mean(axis=1, keepdims=True)
    yc = ys[idx] - ys[idx].mean(axis=1, keepdims=True)
    denom = np.sqrt((xc ** 2).sum(axis=1) * (yc ** 2).sum(axis=1))
    keep = denom > 0
    draws = (xc * yc).sum(axis=1)[keep] / denom[keep]
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Correlation(n, r, Interval(float(lo), float(hi)), int(keep.sum()))


def _run_point(record: RunRecord, wb: Mapping[str, Any], control: Mapping[int, float]) -> RunPoint:
    layer = dotted_get(wb, "probe.best.student.layer")
    return RunPoint(
        run=record.name, arm=record.arm, seed=record.seed, value=record.value,
        alignment=_finite(dotted_get(wb, "cka.mean_mapped_cka.student")),
        initial=_finite(dotted_get(wb, "cka.mean_mapped_cka.initial")),
        gain=record.value - control[record.seed] if record.seed in control else None,
        probe_layer=layer if isinstance(layer, int) and not isinstance(layer, bool) else None,
        probe_accuracy=_finite(dotted_get(wb, "probe.best.student.accuracy")))


def _per_seed_alignment(points: list[RunPoint]) -> dict[int, float]:
    """seed -> mean alignment of the arm's runs of that seed (the seed is the unit, as in the study)."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for p in points:
        if p.alignment is not None:
            by_seed[p.seed].append(p.alignment)
    return {seed: float(np.mean(v)) for seed, v in sorted(by_seed.items())}


def _arm_view(summary: ArmSummary, runs: int, points: list[RunPoint],
              control_cka: Optional[dict[int, float]]) -> ArmView:
    changes = [p.alignment - p.initial for p in points if p.alignment is not None and p.initial is not None]
    layers = Counter(p.probe_layer for p in points if p.probe_layer is not None)
    layer = min(layers, key=lambda k: (-layers[k], k)) if layers else None  # ties: the shallower layer
    over = gain_over(_per_seed_alignment(points), control_cka) if control_cka is not None else None
    return ArmView(
        arm=summary.arm, factors=summary.factors, runs=runs,
        with_workbench=len(points), cka_student=mean_and_count([p.alignment for p in points])[0],
        cka_initial=mean_and_count([p.initial for p in points])[0], cka_change=mean_and_count(changes)[0],
        probe_layer=layer, probe_layer_runs=layers[layer] if layer is not None else 0,
        probe_accuracy=mean_and_count([p.probe_accuracy for p in points])[0],
        gain=summary.gain.estimate.mean if summary.gain else None, cka_over_control=over)


def _join(analysis: Analysis, workbench: Mapping[Path, Any]) -> tuple[list[RunPoint], list[dict[str, Any]]]:
    """(a point per finished run with a workbench.json, the finished runs without one)."""
    control = next((a.values for a in analysis.arms if a.arm == analysis.control), {})
    points, missing = [], []
    for record in analysis.study.records:
        wb = workbench.get(record.run_dir.resolve())
        if isinstance(wb, Mapping):
            points.append(_run_point(record, wb, control))
        else:
            missing.append({"run": record.name, "arm": record.arm, "seed": record.seed,
                            "run_dir": str(record.run_dir),
                            "reason": f"finished, but no readable {WORKBENCH_DIR}/{JSON_NAME}"})
    return points, missing


def sweep_view(root: Path, runs_workbench: Mapping[Path, Any], metric: Optional[str] = None) -> SweepView:
    """The sweep's workbench view from its run directories (read as the study report reads them) and
    each run's workbench.json (run dir -> parsed JSON, e.g. `load_workbench(root)`)."""
    analysis = analyse(load_study(Path(root), metric))
    points, missing = _join(analysis, {Path(p).resolve(): wb for p, wb in runs_workbench.items()})
    by_arm: dict[str, list[RunPoint]] = defaultdict(list)
    for p in points:
        by_arm[p.arm].append(p)
    control_cka = _per_seed_alignment(by_arm[analysis.control]) if analysis.control else None
    finished = Counter(r.arm for r in analysis.study.records)
    arms = [_arm_view(s, finished[s.arm], by_arm[s.arm], control_cka if s.arm != analysis.control else None)
            for s in analysis.arms]
    pairs = [(p.alignment, p.gain) for p in points
             if p.arm != analysis.control and p.alignment is not None and p.gain is not None]
    correlation = correlate([a for a, _ in pairs], [g for _, g in pairs])
    study = analysis.study
    return SweepView(root=Path(root), metric=study.metric, greater_is_better=study.greater_is_better,
                     control=analysis.control, arms=arms, runs=points, correlation=correlation,
                     missing=missing, problems=describe_problems(study.problems))
