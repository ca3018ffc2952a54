"""The sweep view written out: the sentences, the alignment-vs-gain scatter, workbench_sweep.md and
.json (`forge.workbench.sweep` computes the view; this module only words and draws it)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from forge.runtime.rundir import write_json_atomic
from forge.study.plots import new_figure
from forge.study.report import check_mark, format_interval, format_number, markdown_table
from forge.workbench.sweep import JSON, MARKDOWN, SCATTER_PNG, ArmView, SweepView, load_workbench, sweep_view


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
    payload = {**view.to_json(), "sentence": alignment_sentence(view), "root": str(root),
               "figures": {k: p.name for k, p in figures.items()}}
    write_json_atomic(out_dir / JSON, payload)
    return {"markdown": markdown, "json": out_dir / JSON, **figures}


def analyse_sweep(root: Path, out_dir: Path, metric: Optional[str] = None) -> dict[str, Path]:
    """Read every run's workbench.json under root and write the sweep view into out_dir."""
    return write_sweep_view(root, sweep_view(root, load_workbench(root), metric), out_dir)
