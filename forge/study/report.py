"""Write the study report: `study.md` (for people), `study.csv` (one row per arm, for tools),
`study.json` (everything, including per-seed values, effects and the unusable runs) and the PNGs.

Everything is recomputed from the run directories each time (`runs.load_study`), with fixed
bootstrap seeds and no timestamps, so regenerating a report over the same runs gives the same files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from forge.runtime.rundir import write_json_atomic
from forge.study import quantization_section
from forge.study.factors import ALL_CELLS
from forge.study.plots import write_plots
from forge.study.runs import load_study
from forge.study.stats import Estimate, Interval
from forge.study.summary import Analysis, ArmSummary, analyse, cell_name, describe_problems

MARKDOWN = "study.md"
CSV = "study.csv"
JSON = "study.json"

CSV_COLUMNS = (
    "arm", "F", "A", "R", "n_seeds", "seeds", "mean", "sd", "boot_lo", "boot_hi", "t_lo", "t_hi",
    "gain", "gain_paired", "gain_n", "gain_boot_lo", "gain_boot_hi", "gain_t_lo", "gain_t_hi",
    "gain_boot_excludes_zero", "gain_t_excludes_zero", "student_pre_mean", "teacher_mean",
    "student_gain_mean", "transfer_efficiency_mean", "transfer_efficiency_n", "duration_mean_s",
    "n_not_usable",
)


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    csv: Path
    json: Path
    figures: dict[str, Path]
    analysis: Analysis


def format_number(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_interval(interval: Optional[Interval], signed: bool = False) -> str:
    return "—" if interval is None else f"[{format_number(interval.lo, signed)}, {format_number(interval.hi, signed)}]"


def _flag(value: Optional[bool]) -> Optional[int]:
    return None if value is None else int(value)


def arm_row(arm: ArmSummary) -> dict[str, Any]:
    """The arm's CSV / JSON row (None where a number does not exist)."""
    est, gain = arm.metric, arm.gain
    g: Optional[Estimate] = gain.estimate if gain else None
    factors = arm.factors
    return {
        "arm": arm.arm,
        "F": _flag(factors.F) if factors else None,
        "A": _flag(factors.A) if factors else None,
        "R": _flag(factors.R) if factors else None,
        "n_seeds": est.n, "seeds": " ".join(map(str, arm.seeds)),
        "mean": est.mean, "sd": est.sd,
        "boot_lo": est.boot.lo if est.boot else None, "boot_hi": est.boot.hi if est.boot else None,
        "t_lo": est.t.lo if est.t else None, "t_hi": est.t.hi if est.t else None,
        "gain": g.mean if g else None,
        "gain_paired": _flag(gain.paired) if gain else None,
        "gain_n": g.n if g else None,
        "gain_boot_lo": g.boot.lo if g and g.boot else None, "gain_boot_hi": g.boot.hi if g and g.boot else None,
        "gain_t_lo": g.t.lo if g and g.t else None, "gain_t_hi": g.t.hi if g and g.t else None,
        "gain_boot_excludes_zero": _flag(g.boot.excludes_zero) if g and g.boot else None,
        "gain_t_excludes_zero": _flag(g.t.excludes_zero) if g and g.t else None,
        "student_pre_mean": arm.pre_mean, "teacher_mean": arm.teacher_mean,
        "student_gain_mean": arm.student_gain_mean,
        "transfer_efficiency_mean": arm.efficiency_mean, "transfer_efficiency_n": arm.efficiency_n,
        "duration_mean_s": arm.duration_mean_s, "n_not_usable": len(arm.problems),
    }


def gain_sentence(arm: ArmSummary, control: Optional[str], greater_is_better: bool = True) -> str:
    """One honest sentence on whether the arm's gain over the control arm stands out of seed noise
    (a gain is the arm's metric minus the control's; for a lower-is-better metric a negative one is
    the improvement)."""
    if control is None:
        return f"**{arm.arm}**: no control arm (`ce`) finished, so no gain can be computed."
    if arm.gain is None:
        return f"**{arm.arm}**: no gain over {control} (one of the two has no finished run)."
    g = arm.gain.estimate
    seeds = "seed" if g.n == 1 else "seeds"
    how = f"paired {seeds}" if arm.gain.paired else f"{seeds} per arm, unpaired (no seed in common)"
    head = f"**{arm.arm}**: {format_number(g.mean, True)} over {control} ({g.n} {how}"
    if g.boot is None and g.t is None:
        return head + "): a single pair gives no interval, so it cannot be told apart from seed noise."
    head += f"; 95% bootstrap CI {format_interval(g.boot, True)}, t CI {format_interval(g.t, True)})"
    direction = "better" if (g.mean > 0) == greater_is_better else "worse"
    boot_out = bool(g.boot and g.boot.excludes_zero)
    t_out = bool(g.t and g.t.excludes_zero)
    if boot_out and t_out:
        return head + (f": both intervals exclude 0, so the arm is {direction} than {control} beyond the "
                       "seed-to-seed noise.")
    if boot_out or t_out:
        which, other = ("bootstrap", "t") if boot_out else ("t", "bootstrap")
        return head + (f": the {which} CI excludes 0 but the {other} CI does not, so this is weak evidence "
                       f"that the arm is {direction}; more seeds would settle it.")
    return head + f": the CI includes 0, so at {g.n} seeds the arm cannot be told apart from {control}."


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def check_mark(flag: Optional[bool]) -> str:
    return "" if flag is None else ("✓" if flag else "·")


def loss_factorial(analysis: Analysis) -> bool:
    """True when some arm is a cell of the F × A × R loss factorial (its F/A/R columns mean something)."""
    return any(arm.factors is not None for arm in analysis.arms)


def _arms_section(analysis: Analysis) -> list[str]:
    control = analysis.control or "ce"
    header = ["arm", "F", "A", "R", "n", "mean", "95% bootstrap CI", "95% t CI", f"gain over {control}",
              "gain 95% bootstrap CI", "gain 95% t CI", "student pre", "teacher", "transfer efficiency (n)",
              "not usable"]
    factor_columns = loss_factorial(analysis)
    rows = []
    for arm in analysis.arms:
        f = arm.factors
        g = arm.gain.estimate if arm.gain else None
        rows.append([
            f"`{arm.arm}`", check_mark(f.F if f else None), check_mark(f.A if f else None), check_mark(f.R if f else None),
            str(arm.metric.n), format_number(arm.metric.mean), format_interval(arm.metric.boot), format_interval(arm.metric.t),
            format_number(g.mean, True) if g else ("(control)" if arm.arm == analysis.control else "—"),
            format_interval(g.boot, True) if g else "—", format_interval(g.t, True) if g else "—",
            format_number(arm.pre_mean), format_number(arm.teacher_mean),
            f"{format_number(arm.efficiency_mean)} ({arm.efficiency_n})", str(len(arm.problems)),
        ])
    direction = "higher" if analysis.study.greater_is_better else "lower"
    lines = [f"## Arms: {analysis.study.metric} of the student after training ({direction} is better)", "",
             f"n = finished seeds. Gains are taken seed by seed against `{control}` (the same seed's data order, "
             "initialisation and subset), so seed-to-seed spread shared by both arms cancels. Transfer "
             "efficiency = student gain / teacher advantage (mean over the runs where the teacher had an "
             "advantage, their number in brackets).", ""]
    if not factor_columns:  # arms named by the study (λ/β, QAD arms): no loss cells to mark
        header, rows = header[:1] + header[4:], [row[:1] + row[4:] for row in rows]
    lines += markdown_table(header, rows) if rows else ["No arm has a finished run."]
    greater = analysis.study.greater_is_better
    sentences = [gain_sentence(a, analysis.control, greater) for a in analysis.arms if a.arm != analysis.control]
    if sentences:
        lines += ["", "### Is each arm's gain outside the noise?", ""] + [f"- {s}" for s in sentences]
    return lines


def _effects_section(analysis: Analysis) -> list[str]:
    if not analysis.cell_arms:  # arms named by `arm=` options (the QAD study), not by loss families
        return []
    lines = ["## Factorial effects (F = feature, A = attention, R = response)", ""]
    factorial = analysis.factorial
    if factorial is None or not factorial.computable:
        reason = analysis.factorial_note or "no arm could be placed in the 2x2x2 design"
        return lines + [f"Not computable: {reason}. The 2x2x2 analysis needs a finished run in each of the "
                        "8 cells (`ce` and the 7 `combined_*` arms)."]
    lines += ["Each effect is the mean of the four cells where its contrast is +1 minus the mean of the four "
              "where it is −1 (main effect F: cells with F minus cells without; interaction FxA: cells where "
              "F and A are both on or both off minus the others). Bootstrap CI: seeds resampled within each "
              f"cell; t CI: pooled within-cell variance, df = {factorial.df}.", ""]
    rows = [[e.name, format_number(e.estimate, True), format_interval(e.boot, True), format_interval(e.t, True),
             "yes" if e.boot and e.boot.excludes_zero else "no",
             "yes" if e.t and e.t.excludes_zero else "no"] for e in factorial.effects]
    lines += markdown_table(["effect", "estimate", "95% bootstrap CI", "95% t CI", "bootstrap CI excludes 0",
                     "t CI excludes 0"], rows)
    cells = [[cell_name(c, analysis.cell_arms), str(factorial.cell_n[c]), format_number(factorial.cell_means.get(c))]
             for c in ALL_CELLS]
    return lines + ["", "Cell means:", ""] + markdown_table(["cell", "n", "mean"], cells)


def _problems_section(analysis: Analysis) -> list[str]:
    problems = analysis.study.problems
    lines = ["## Runs that give no number (failed, interrupted, unfinished, missing)", ""]
    if not problems:
        return lines + ["None: every run found finished and every expected job has a run directory."]
    rows = [[f"`{p['run']}`", p["arm"] or "?", str(p["seed"] if p["seed"] is not None else "?"), p["status"],
             str(p["reason"]).replace("|", "\\|").replace("\n", " ")] for p in describe_problems(problems)]
    return lines + [f"{len(problems)} run(s) are left out of every number above:", ""] + \
        markdown_table(["run", "arm", "seed", "status", "reason"], rows)


def _figures_section(analysis: Analysis, figures: dict[str, Path]) -> list[str]:
    captions = {
        "arms": "Per-arm metric and gain over the control, with 95% bootstrap CIs",
        "effects": "Factorial effects with 95% CIs",
        "curves": ("Learning curves: periodic evaluation, mean over seeds" if analysis.curve_kind == "eval"
                   else "Learning curves: training loss, mean over seeds (no periodic evaluations recorded; "
                        "set trainer.eval_steps to record them)"),
    }
    lines = ["## Figures", ""]
    if not figures:
        return lines + ["None: no arm has a finished run."]
    for name, path in figures.items():
        lines += [f"{captions[name]}: [{path.name}]({path.name})", "", f"![{captions[name]}]({path.name})", ""]
    return lines[:-1]


def _notes_section(analysis: Analysis) -> list[str]:
    notes = [
        "Intervals are 95%. The percentile bootstrap (10,000 resamples of the seeds, fixed RNG seed, so the "
        "report is reproducible) is coarse with few seeds: with 3 seeds its interval of a mean is exactly the "
        "range of the 3 values, and it is too narrow. The t interval (t quantiles from a table: 4.303 at "
        "2 degrees of freedom) assumes normal seed-to-seed variation and is much wider. Trust a difference "
        "when both exclude 0.",
    ]
    if loss_factorial(analysis):
        notes.append("Why did an arm win or lose? `python -m forge.workbench <this sweep directory>` probes every "
                     "run's layers, measures the CKA of the layers its loss mapped, and writes "
                     "[workbench_sweep.md](workbench_sweep.md) here: alignment per arm and against the gain over `ce`.")
    notes += analysis.study.notes
    return ["## Notes", ""] + [f"- {n}" for n in notes]


def render_markdown(analysis: Analysis, figures: dict[str, Path], source: str) -> str:
    study = analysis.study
    title = ("Quantization study report" if quantization_section.applies(analysis)
             else "FAR study report" if loss_factorial(analysis) else "Study report")
    lines = [f"# {title}", "",
             f"Generated by `python -m forge.study {source}` from {study.n_run_dirs} run directories "
             f"({len(study.records)} finished with a value, {len(study.problems)} not usable). Regenerate it "
             "the same way at any time; it reads only the run directories.", "",
             "## Setup", ""]
    lines += markdown_table(["setting", "value"], [[label, f"`{value}`"] for label, value in analysis.setup])
    quantized = quantization_section.section(analysis, format_number, format_interval, markdown_table)
    for section in (_arms_section(analysis), quantized, _effects_section(analysis), _problems_section(analysis),
                    _figures_section(analysis, figures), _notes_section(analysis)):
        if section:
            lines += [""] + section
    return "\n".join(lines).rstrip() + "\n"


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def write_csv(analysis: Analysis, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for arm in analysis.arms:
            row = arm_row(arm)
            writer.writerow([_csv_value(row[c]) for c in CSV_COLUMNS])
    return path


def to_json(analysis: Analysis, figures: dict[str, Path]) -> dict[str, Any]:
    factorial = analysis.factorial
    effects = []
    if factorial is not None and factorial.computable:
        effects = [{"effect": e.name, "estimate": e.estimate,
                    "boot": [e.boot.lo, e.boot.hi] if e.boot else None,
                    "t": [e.t.lo, e.t.hi] if e.t else None} for e in factorial.effects]
    return {
        "metric": analysis.study.metric,
        "greater_is_better": analysis.study.greater_is_better,
        "control": analysis.control,
        "setup": dict(analysis.setup),
        "arms": [{**arm_row(a), "values_by_seed": {str(s): v for s, v in a.values.items()},
                  "curve": {"kind": analysis.curve_kind, "points": [[p.step, p.mean, p.n] for p in a.curve]}}
                 for a in analysis.arms],
        "factorial": {
            "computable": bool(factorial and factorial.computable),
            "note": analysis.factorial_note,
            "df": factorial.df if factorial else None,
            "effects": effects,
            "cells": [{"cell": c.label, "arms": analysis.cell_arms.get(c, []),
                       "n": factorial.cell_n[c] if factorial else 0,
                       "mean": factorial.cell_means.get(c) if factorial else None} for c in ALL_CELLS],
        },
        "quantization": _quantization_json(analysis),
        "problems": describe_problems(analysis.study.problems),
        "notes": analysis.study.notes,
        "figures": {k: p.name for k, p in figures.items()},
    }


def _quantization_json(analysis: Analysis) -> Optional[dict[str, Any]]:
    if not quantization_section.applies(analysis):
        return None
    header, rows = quantization_section.rows(analysis, format_number, format_interval)
    return {"columns": header, "rows": rows}


def write_report(root: Path, out_dir: Optional[Path] = None, metric: Optional[str] = None,
                 source: Optional[str] = None) -> ReportFiles:
    """Read the study under root and write study.md, study.csv, study.json and the figures into
    out_dir (default: root). Raises runs.NoRunsError when root holds no run directory."""
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    analysis = analyse(load_study(root, metric))
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_plots(analysis, out_dir)
    markdown = out_dir / MARKDOWN
    markdown.write_text(render_markdown(analysis, figures, source or str(root)), encoding="utf-8")
    csv_path = write_csv(analysis, out_dir / CSV)
    json_path = out_dir / JSON
    write_json_atomic(json_path, to_json(analysis, figures))
    return ReportFiles(markdown, csv_path, json_path, figures, analysis)
