"""`mode=eval`: score the student on the task's eval sets, train nothing.

Why a mode: a benchmark whose pages carry tests but no markdown (`task=olmocr_bench`), or a
trained run's model pointed at another task (`model.student.source=local
model.student.name_or_path=<run>/final`), is scored through the same handler, eval loop, run
directory and tracker as any run, so its numbers sit beside trained runs' in a study report. The
run writes its config, metadata, log and metrics.json (post = pre); no checkpoint, no final/.
"""

from __future__ import annotations

from typing import Any

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts


class EvalMode(Mode):
    """Evaluation only: the student as it loads, on every eval set of the task."""

    trains = False
    trains_on_targets = False
    loss_note = "trains nothing"

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        return super().check(parts) + self.alpha_unused(parts, "trains nothing, so alpha is unused",
                                                         "drop the alpha override")

    def build_trainer(self, components: Any, args: Any, runtime: Any) -> Any:
        raise RuntimeError("mode=eval has no trainer: the pipeline reports its pre-training scores")
