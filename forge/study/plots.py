"""The study's figures as PNG files: per-arm metric and gain with 95% intervals, the factorial
effects, and the learning curves.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas directly, never through pyplot:
no global backend is switched and no window can open, so this is safe in the Hydra process that
ran the sweep, on a headless SLURM node and in tests. Matplotlib writes no date into PNG files, so
a regenerated report has byte-identical figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from forge.study.stats import Interval
from forge.study.summary import Analysis

ARMS_PNG = "study_arms.png"
EFFECTS_PNG = "study_effects.png"
CURVES_PNG = "study_curves.png"


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _error(center: float, interval: Optional[Interval]) -> tuple[list[float], list[float]]:
    """Asymmetric error-bar lengths (matplotlib's yerr) for an interval; zero when there is none."""
    if interval is None:
        return [0.0], [0.0]
    return [max(center - interval.lo, 0.0)], [max(interval.hi - center, 0.0)]


def plot_arms(analysis: Analysis, path: Path) -> Optional[Path]:
    """Left: each arm's mean metric with its bootstrap 95% CI and the seeds' values. Right: the gain
    over the control arm with its bootstrap 95% CI (paired by seed). None when no arm finished."""
    arms = analysis.arms
    if not arms:
        return None
    figure, (left, right) = new_figure(max(6.0, 1.4 * len(arms) + 4), 4.2, ncols=2)
    positions = range(len(arms))
    for x, arm in zip(positions, arms):
        lower, upper = _error(arm.metric.mean, arm.metric.boot)
        left.errorbar([x], [arm.metric.mean], yerr=[lower, upper], fmt="o", color="C0", capsize=4)
        # the seeds' own values, beside the bar so the interval's ends do not hide them
        left.scatter([x + 0.15] * len(arm.values), list(arm.values.values()), color="C0", alpha=0.4, s=12)
    teachers = [a.teacher_mean for a in arms if a.teacher_mean is not None]
    if teachers:
        left.axhline(sum(teachers) / len(teachers), color="C3", linestyle=":", label="teacher (mean)")
        left.legend(loc="best", fontsize=8)
    left.set_xticks(list(positions), [a.arm for a in arms], rotation=30, ha="right")
    left.set_ylabel(analysis.study.metric)
    left.set_title("student after training (mean, 95% bootstrap CI, seeds)", fontsize=9)

    gained = [(x, a) for x, a in zip(positions, arms) if a.gain is not None]
    for x, arm in gained:
        lower, upper = _error(arm.gain.estimate.mean, arm.gain.estimate.boot)
        right.errorbar([x], [arm.gain.estimate.mean], yerr=[lower, upper], fmt="o", color="C1", capsize=4)
    right.axhline(0.0, color="grey", linewidth=0.8)
    right.set_xlim(left.get_xlim())  # each arm at the same x in both panels
    right.set_xticks([x for x, _ in gained], [a.arm for _, a in gained], rotation=30, ha="right")
    control = analysis.control or "no control arm"
    right.set_title(f"gain over {control} (paired by seed, 95% bootstrap CI)", fontsize=9)
    figure.savefig(path, dpi=110)
    return path


def plot_effects(analysis: Analysis, path: Path) -> Optional[Path]:
    """The 7 factorial effects with bootstrap (thick) and t (thin) 95% intervals; None when the
    factorial could not be computed (the report says why)."""
    factorial = analysis.factorial
    if factorial is None or not factorial.computable:
        return None
    figure, (axis,) = new_figure(6.5, 3.8)
    effects = list(factorial.effects)
    for y, effect in enumerate(effects):
        if effect.t is not None:
            axis.plot([effect.t.lo, effect.t.hi], [y, y], color="C0", linewidth=1, alpha=0.5)
        if effect.boot is not None:
            axis.plot([effect.boot.lo, effect.boot.hi], [y, y], color="C0", linewidth=4, alpha=0.8)
        axis.plot([effect.estimate], [y], "o", color="C3")
    axis.axvline(0.0, color="grey", linewidth=0.8)
    axis.set_yticks(range(len(effects)), [e.name for e in effects])
    axis.invert_yaxis()
    axis.set_xlabel(f"effect on {analysis.study.metric}")
    axis.set_title("FAR factorial effects (thick: bootstrap 95% CI, thin: t 95% CI)", fontsize=9)
    figure.savefig(path, dpi=110)
    return path


def plot_curves(analysis: Analysis, path: Path) -> Optional[Path]:
    """Mean over seeds, per arm, of the periodic eval metric against the step (or of the training
    loss when no run recorded periodic evaluations); None when no run logged anything."""
    drawn = [a for a in analysis.arms if a.curve]
    if not drawn:
        return None
    figure, (axis,) = new_figure(7.0, 4.2)
    for index, arm in enumerate(drawn):
        steps = [p.step for p in arm.curve]
        axis.plot(steps, [p.mean for p in arm.curve], marker="o" if len(steps) < 15 else None, markersize=3,
                  color=f"C{index % 10}", linestyle="-" if index < 10 else "--", label=arm.arm)
    axis.set_xlabel("step")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if analysis.curve_kind == "eval":
        axis.set_ylabel(analysis.study.metric)
        axis.set_title("periodic evaluation of the student (mean over seeds)", fontsize=9)
    else:
        axis.set_ylabel("training loss")
        axis.set_title("training loss (mean over seeds; no periodic evaluations recorded)", fontsize=9)
    axis.legend(fontsize=8, ncol=2)
    figure.savefig(path, dpi=110)
    return path


def write_plots(analysis: Analysis, out_dir: Path) -> dict[str, Path]:
    """Every figure that can be drawn, name -> path. A figure that cannot be drawn this time is
    removed if an earlier report left one, so no stale figure sits next to a new report."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, draw, filename in (("arms", plot_arms, ARMS_PNG), ("effects", plot_effects, EFFECTS_PNG),
                                 ("curves", plot_curves, CURVES_PNG)):
        path = draw(analysis, out_dir / filename)
        if path is None:
            (out_dir / filename).unlink(missing_ok=True)
        else:
            written[name] = path
    return written
