"""The transfer-gap report: how much of the teacher's advantage the student recovered.

Definitions (on the task's primary metric, written for higher-is-better; for a lower-is-better
metric such as an error rate every difference is taken the other way round, so a positive gain is
always an improvement):
- teacher advantage  = teacher_post − student_pre   (what there was to learn)
- student gain       = student_post − student_pre   (what the student learned)
- remaining gap      = teacher_post − student_post
- transfer efficiency = student gain / teacher advantage  (1.0 = the student reached the teacher;
  undefined (None) when the teacher has no advantage)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class TransferGap:
    metric: str
    teacher_pre: Optional[float]
    teacher_post: Optional[float]
    student_pre: float
    student_post: float
    teacher_advantage: Optional[float]
    student_gain: float
    remaining_gap: Optional[float]
    transfer_efficiency: Optional[float]

    def as_dict(self) -> dict:
        return asdict(self)


def transfer_gap(
    metric: str,
    student_pre: float,
    student_post: float,
    teacher_pre: Optional[float] = None,
    teacher_post: Optional[float] = None,
    min_advantage: float = 1e-9,
    greater_is_better: bool = True,
) -> TransferGap:
    sign = 1.0 if greater_is_better else -1.0
    gain = sign * (student_post - student_pre)
    if teacher_post is None:
        return TransferGap(metric, teacher_pre, None, student_pre, student_post, None, gain, None, None)
    advantage = sign * (teacher_post - student_pre)
    efficiency = gain / advantage if advantage > min_advantage else None
    return TransferGap(
        metric=metric,
        teacher_pre=teacher_pre,
        teacher_post=teacher_post,
        student_pre=student_pre,
        student_post=student_post,
        teacher_advantage=advantage,
        student_gain=gain,
        remaining_gap=sign * (teacher_post - student_post),
        transfer_efficiency=efficiency,
    )


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def format_report(pre: dict, post: dict, gap: TransferGap) -> str:
    """A short plain-text table: teacher/student metrics before and after, then the gap."""
    keys = sorted({k for side in ("student", "teacher") for k in pre.get(side, {})} |
                  {k for side in ("student", "teacher") for k in post.get(side, {})})
    header = f"{'metric':<34} {'teacher pre':>12} {'teacher post':>12} {'student pre':>12} {'student post':>12}"
    lines = [header, "-" * len(header)]
    for key in keys:
        lines.append(
            f"{key:<34} {_fmt(pre.get('teacher', {}).get(key)):>12} {_fmt(post.get('teacher', {}).get(key)):>12}"
            f" {_fmt(pre.get('student', {}).get(key)):>12} {_fmt(post.get('student', {}).get(key)):>12}"
        )
    lines.append("")
    lines.append(f"transfer gap on {gap.metric}: teacher advantage {_fmt(gap.teacher_advantage)}, "
                 f"student gain {_fmt(gap.student_gain)}, remaining gap {_fmt(gap.remaining_gap)}, "
                 f"transfer efficiency {_fmt(gap.transfer_efficiency)}")
    return "\n".join(lines)
