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

from forge.runtime.rundir import read_json_object, write_json_atomic
from forge.study.factors import Factors
from forge.study.plots import new_figure
from forge.study.report import check_mark, format_interval, format_number, markdown_table
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
                "missing": self.missing, "problems": self.problems, "sentence": alignment_sentence(self)}


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


def _cka_clause(arm: ArmView, control: ArmView) -> str:
    """`arm` X vs `ce` Y (+d, paired CIs): a verdict that trusts a difference only when both 95%
    intervals exclude 0 (at 3 seeds the bootstrap one is just the range of the differences)."""
    head = f"`{arm.arm}` {format_number(arm.cka_student)} vs `{control.arm}` {format_number(control.cka_student)}"
    over = arm.cka_over_control
    if over is None:
        return head + " (no paired difference)"
    est = over.estimate
    seeds = "seed" if est.n == 1 else "seeds"
    pairing = f"{est.n} paired {seeds}" if over.paired else f"unpaired, {est.n} {seeds}"
    if est.boot is None and est.t is None:
        return head + f" ({format_number(est.mean, True)}, one seed pair: no interval, so no evidence either way)"
    head += f" ({format_number(est.mean, True)}, {pairing}; 95% bootstrap CI {format_interval(est.boot, True)}, t CI {format_interval(est.t, True)})"
    boot_out, t_out = bool(est.boot and est.boot.excludes_zero), bool(est.t and est.t.excludes_zero)
    side = "above" if est.mean > 0 else "below"
    if boot_out and t_out:
        return head + f": {side} `{control.arm}` beyond seed noise"
    if boot_out or t_out:
        return head + f": weak evidence that it is {side} `{control.arm}` (only one interval excludes 0)"
    return head + f": the intervals include 0, so no evidence that it differs from `{control.arm}`"


def _family_sentence(view: SweepView, letter: str, words: str, caveat: str = "") -> str:
    arms = [a for a in view.arms
            if a.factors is not None and getattr(a.factors, letter) and a.arm != view.control]
    if not arms:
        return f"No arm with {words} finished."
    names = ", ".join(f"`{a.arm}`" for a in arms)
    measured = [a for a in arms if a.cka_student is not None]
    if not measured:
        return f"The arms with {words} ({names}) have no mapped-layer CKA (no workbench, or CKA was skipped)."
    control = next((a for a in view.arms if a.arm == view.control), None)
    if control is None or control.cka_student is None:
        return f"The arms with {words} ({names}) cannot be compared: the control arm has no mapped-layer CKA."
    return f"Arms with {words}: " + "; ".join(_cka_clause(a, control) for a in measured) + "." + caveat


def _correlation_sentence(view: SweepView) -> str:
    c, control = view.correlation, view.control
    if control is None:
        return "Whether alignment predicts a gain cannot be told: no control arm (`ce`) finished."
    if c.r is None or c.boot is None:
        return f"Whether alignment predicts the gain over `{control}` cannot be told: {c.reason}."
    head = (f"Alignment vs gain over `{control}` across {c.n} distillation runs: Pearson r = {c.r:+.3f} "
            f"(95% bootstrap CI [{c.boot.lo:+.3f}, {c.boot.hi:+.3f}] over runs, {c.n_boot} resamples)")
    if not c.boot.excludes_zero:
        return head + "; the CI includes 0: no evidence that alignment predicts the gain."
    better = (c.r > 0) == view.greater_is_better
    return head + (f"; the CI excludes 0: runs whose mapped layers aligned more did "
                   f"{'better' if better else 'worse'} relative to `{control}`.")


def alignment_sentence(view: SweepView) -> str:
    """Did the feature and attention losses align what they targeted, and does alignment predict gain?"""
    return " ".join([
        f"Did the feature and attention losses align what they targeted (mean mapped-layer CKA of the "
        f"student to the teacher, against `{view.control or 'ce'}`)?",
        _family_sentence(view, "F", "a feature loss"),
        _family_sentence(view, "A", "an attention loss",
                         " (CKA reads hidden states, which an attention loss reaches only indirectly.)"),
        _correlation_sentence(view),
    ])


def plot_alignment_vs_gain(view: SweepView, path: Path) -> Optional[Path]:
    """Alignment (x) against gain over the control (y), one colour per arm; None without a point."""
    drawn = [p for p in view.runs if p.alignment is not None and p.gain is not None]
    if not drawn:
        return None
    figure, (axis,) = new_figure(6.5, 4.5)
    for index, arm in enumerate(a.arm for a in view.arms):
        mine = [p for p in drawn if p.arm == arm]
        if mine:
            axis.scatter([p.alignment for p in mine], [p.gain for p in mine], color=f"C{index % 10}", s=30,
                         marker="x" if arm == view.control else "o",
                         label=f"{arm} (control, not in r)" if arm == view.control else arm)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xlabel("mean mapped-layer CKA, student vs teacher (alignment)")
    axis.set_ylabel(f"gain in {view.metric} over {view.control or 'control'} (same seed)")
    c = view.correlation
    stat = f"r = {c.r:+.2f}, 95% CI [{c.boot.lo:+.2f}, {c.boot.hi:+.2f}], n = {c.n}" if c.r is not None and \
        c.boot is not None else f"r not computable ({c.reason})"
    axis.set_title(f"alignment vs gain per run ({stat})", fontsize=9)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def _arm_rows(view: SweepView) -> list[list[str]]:
    rows = []
    for a in view.arms:
        f, over = a.factors, a.cka_over_control
        layer = "—" if a.probe_layer is None else f"{a.probe_layer} ({a.probe_layer_runs}/{a.with_workbench})"
        gain = "(control)" if a.arm == view.control else format_number(a.gain, True)
        rows.append([f"`{a.arm}`", check_mark(f.F if f else None), check_mark(f.A if f else None), check_mark(f.R if f else None),
                     f"{a.with_workbench}/{a.runs}", format_number(a.cka_student), format_number(a.cka_initial),
                     format_number(a.cka_change, True), format_number(over.estimate.mean, True) if over else "—",
                     format_interval(over.estimate.boot, True) if over else "—", layer, format_number(a.probe_accuracy), gain])
    return rows


def render_markdown(view: SweepView, figures: Mapping[str, Path]) -> str:
    direction = "higher" if view.greater_is_better else "lower"
    control = view.control or "ce"
    c = view.correlation
    corr = f"Pearson r: not computable ({c.reason}), n = {c.n}." if c.r is None else (
        f"Pearson r (alignment, gain) = {c.r:+.4f}, n = {c.n} runs, no interval: {c.reason}." if c.boot is None else (
        f"Pearson r (alignment, gain) = {c.r:+.4f}, 95% bootstrap CI {format_interval(c.boot, True)}, n = {c.n} runs "
        f"(`{control}` left out). The runs of all arms are pooled, so an arm that both aligns and gains more "
        "weighs in as much as the spread within an arm."))
    lines = ["# Workbench across the sweep", "",
             f"Runs under `{view.root}`. Metric: {view.metric} ({direction} is better). Gain = a run's metric − "
             f"the `{control}` run of the same seed. Alignment = mean mapped-layer CKA of the student to the "
             "teacher; initial = the same before training.", "", "## Arms", ""]
    lines += markdown_table(["arm", "F", "A", "R", "runs (workbench/finished)", "mean mapped CKA (student)", "initial",
                     "change", f"CKA − {control} (paired)", "95% bootstrap CI", "best probe layer (runs)",
                     "best probe acc", f"mean gain over {control}"], _arm_rows(view))
    lines += ["", "## Alignment vs gain", "", corr, "", alignment_sentence(view), ""]
    lines += markdown_table(["run", "arm", "seed", "alignment", "initial", "gain", "best probe layer", "best probe acc"],
                    [[f"`{p.run}`", p.arm, str(p.seed), format_number(p.alignment), format_number(p.initial), format_number(p.gain, True),
                      "—" if p.probe_layer is None else str(p.probe_layer), format_number(p.probe_accuracy)]
                     for p in view.runs])
    if view.missing or view.problems:
        lines += ["", "## Runs left out", ""] + markdown_table(
            ["run", "arm", "seed", "reason"],
            [[f"`{m['run']}`", str(m["arm"] or "?"), str(m["seed"] if m["seed"] is not None else "?"),
              str(m["reason"]).replace("|", "\\|").replace("\n", " ")] for m in view.missing + view.problems])
    for path in figures.values():
        lines += ["", "## Figure", "", f"![alignment vs gain]({path.name})"]
    return "\n".join(lines) + "\n"


def write_sweep_view(root: Path, view: SweepView, out_dir: Path) -> dict[str, Path]:
    """Write workbench_sweep.md, workbench_sweep.json and alignment_vs_gain.png (when any run has both
    numbers; a stale one is removed otherwise) into out_dir. root: where the runs were read from."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    scatter = plot_alignment_vs_gain(view, out_dir / SCATTER_PNG)
    if scatter is None:
        (out_dir / SCATTER_PNG).unlink(missing_ok=True)
    else:
        figures["scatter"] = scatter
    markdown = out_dir / MARKDOWN
    markdown.write_text(render_markdown(view, figures), encoding="utf-8")
    payload = {**view.to_json(), "root": str(root), "figures": {k: p.name for k, p in figures.items()}}
    write_json_atomic(out_dir / JSON, payload)
    return {"markdown": markdown, "json": out_dir / JSON, **figures}


def analyse_sweep(root: Path, out_dir: Path, metric: Optional[str] = None) -> dict[str, Path]:
    """Read every run's workbench.json under root and write the sweep view into out_dir."""
    return write_sweep_view(root, sweep_view(root, load_workbench(root), metric), out_dir)
