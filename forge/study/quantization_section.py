"""The study report's quantization section: for a sweep of quantized runs (the QAD study), every
arm's scores on every metric side by side with the float references, and the fraction of the PTQ
drop each arm recovers (forge.eval.quantized_comparison defines it).

Two readings of the recovered fraction:
- per run, as the run itself reports it: against its own untrained round-to-nearest student and its
  own float student (seeds paired by construction), averaged over seeds with a CI;
- from the study's means: (PTQ − arm) / (PTQ − FP) with PTQ the control arm's mean (the RTN arm in
  the QAD study) and FP the float student's mean, which also places the PTQ arms (GPTQ against RTN).
"""

from __future__ import annotations

from typing import Any, Optional

from forge.eval.quantized_comparison import greater_is_better, recovered_fraction
from forge.study.stats import estimate
from forge.study.summary import Analysis, ArmSummary, mean_and_count


def applies(analysis: Analysis) -> bool:
    return any(r.quantization for r in analysis.study.records)


def metric_keys(analysis: Analysis) -> list[str]:
    """The metrics every finished run scored (token counts left out), perplexity first."""
    records = analysis.study.records
    shared = set.intersection(*(set(r.scores) for r in records)) if records else set()
    keys = [k for k in shared if not k.endswith("_tokens")]
    return sorted(keys, key=lambda k: (greater_is_better(k), k))


def _references(analysis: Analysis, key: str) -> dict[str, Optional[float]]:
    """Float student, float teacher (means over the runs that scored them), the control arm's mean."""
    blocks = [r.quantization for r in analysis.study.records if r.quantization]
    fp = mean_and_count((b.get("fp_student") or {}).get(key) for b in blocks)[0]
    teacher = mean_and_count((b.get("fp_teacher") or {}).get(key) for b in blocks)[0]
    control = next((a for a in analysis.arms if a.arm == analysis.control), None)
    return {"fp_student": fp, "fp_teacher": teacher, "ptq": _arm_mean(analysis, control, key) if control else None}


def _arm_mean(analysis: Analysis, arm: ArmSummary, key: str) -> Optional[float]:
    return mean_and_count(r.scores.get(key) for r in analysis.study.records if r.arm == arm.arm)[0]


def _run_recovered(analysis: Analysis, arm: ArmSummary, key: str) -> Any:
    values = [(r.quantization or {}).get("recovered_fraction", {}).get(key)
              for r in analysis.study.records if r.arm == arm.arm]
    kept = [v for v in values if isinstance(v, (int, float))]
    return estimate(kept) if kept else None


def rows(analysis: Analysis, fmt: Any, fmt_interval: Any) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the side-by-side table."""
    keys = metric_keys(analysis)
    refs = {key: _references(analysis, key) for key in keys}
    header = ["arm", "n", *keys]
    for key in keys:
        header += [f"recovered ({key.rsplit('/', 1)[-1]}, per run, 95% bootstrap CI)",
                   f"recovered ({key.rsplit('/', 1)[-1]}, from means)"]
    table = [["FP teacher", "", *[fmt(refs[k]["fp_teacher"]) for k in keys], *["", ""] * len(keys)],
             ["FP student", "", *[fmt(refs[k]["fp_student"]) for k in keys], *["", ""] * len(keys)]]
    for arm in analysis.arms:
        row = [f"`{arm.arm}`", str(arm.metric.n), *[fmt(_arm_mean(analysis, arm, k)) for k in keys]]
        for key in keys:
            per_run = _run_recovered(analysis, arm, key)
            row.append(f"{fmt(per_run.mean)} {fmt_interval(per_run.boot)}" if per_run else "—")
            row.append(fmt(recovered_fraction(refs[key]["ptq"], _arm_mean(analysis, arm, key), refs[key]["fp_student"])))
        table.append(row)
    return header, table


def section(analysis: Analysis, fmt: Any, fmt_interval: Any, markdown_table: Any) -> list[str]:
    if not applies(analysis):
        return []
    header, table = rows(analysis, fmt, fmt_interval)
    control = analysis.control or "the control arm"
    return ["## Quantization: float, PTQ and QAT/QAD students side by side", "",
            "Scores are means over seeds. Recovered fraction = (m_PTQ − m_arm) / (m_PTQ − m_FP): 1 is the "
            "float student's score, 0 round-to-nearest PTQ's, above 1 better than the float student. Per run: "
            "against the run's own untrained fake-quantized student (exactly RTN's rounding) and its float "
            f"student. From means: PTQ = `{control}`'s mean, FP = the float student's mean.", "",
            *markdown_table(header, table)]
