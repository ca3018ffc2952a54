"""What a quantized run reports beside its pre/post scores: the float teacher, the float student,
the post-training-quantized student and the run's own int4 student side by side, and the fraction
of the PTQ drop the run recovered:

    recovered = (m_PTQ − m_run) / (m_PTQ − m_FP)

for each metric m (perplexity, chrF, BLEU...): 1 means the int4 student scores as the float model
it replaces, 0 as round-to-nearest PTQ, above 1 better than the float model (possible when
training also improves the model), below 0 worse than PTQ. The ratio has the same meaning whichever
direction the metric improves in. m_FP is the float student's score before training (the model the
int4 one replaces; in self-distillation it is the teacher's own model).

Where each number comes from:
- a QAT run (`int4_qat`): the untrained fake-quantized student rounds every weight exactly as
  round-to-nearest PTQ does (tested in tests/unit/test_quantization.py), so its pre score *is* the
  RTN PTQ score; the float student is scored once more, before fake quantization
  (`pre.student_float`);
- a PTQ run (`mode=ptq`): pre is the float student, post its PTQ form (no recovered fraction: it
  trains nothing);
- a run that trains in float and rounds at the end (`int4_rtn` in a training mode): pre is the float
  student; there is no untrained PTQ score, so no recovered fraction.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

#: metric name endings whose lower values are better (everything else Forge reports improves upward)
LOWER_IS_BETTER = ("perplexity", "loss", "cer", "wer")

FLOAT_STUDENT = "student_float"


def greater_is_better(key: str) -> bool:
    """The direction of a metric key such as `validation/perplexity` (lower) or `validation/chrf`."""
    return not key.rsplit("/", 1)[-1].endswith(LOWER_IS_BETTER)


def recovered_fraction(ptq: Optional[float], run: Optional[float], fp: Optional[float]) -> Optional[float]:
    """(ptq − run) / (ptq − fp); None when a score is missing or PTQ lost nothing (ptq == fp)."""
    if not all(isinstance(v, (int, float)) for v in (ptq, run, fp)) or ptq == fp:
        return None
    return (ptq - run) / (ptq - fp)


def comparison(pre: Mapping[str, Any], post: Mapping[str, Any], *, trains: bool,
               quantizes_in_training: bool) -> dict[str, Any]:
    """The `quantization` block of a quantized run's metrics.json (module docstring)."""
    if not trains:
        fp, ptq = pre.get("student"), post.get("student")
    elif quantizes_in_training:
        fp, ptq = pre.get(FLOAT_STUDENT), pre.get("student")
    else:
        fp, ptq = pre.get("student"), None
    run = post.get("student") if trains else None
    block: dict[str, Any] = {"fp_teacher": pre.get("teacher"), "fp_student": fp, "ptq_student": ptq,
                             "student": run}
    if run is not None and ptq is not None and fp is not None:
        block["recovered_fraction"] = {key: recovered_fraction(ptq.get(key), run[key], fp.get(key))
                                       for key in run if isinstance(run[key], (int, float))
                                       and not key.endswith("_tokens")}  # counts, not scores
    return block


def format_comparison(block: Mapping[str, Any]) -> str:
    """The side-by-side table of the run's log."""
    rows = [("FP teacher", block.get("fp_teacher")), ("FP student", block.get("fp_student")),
            ("PTQ student", block.get("ptq_student")), ("this run's int4 student", block.get("student")),
            ("recovered fraction", block.get("recovered_fraction"))]
    keys = sorted({k for _, scores in rows if scores for k in scores if not k.endswith("_tokens")})
    width = max([12, *(len(k) + 2 for k in keys)])
    lines = [f"{'':<26}" + "".join(f"{k:>{width}}" for k in keys)]
    for label, scores in rows:
        if scores:
            lines.append(f"{label:<26}" + "".join(f"{_fmt(scores.get(k)):>{width}}" for k in keys))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"
