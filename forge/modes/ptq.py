"""`mode=ptq`: post-training quantization of the student as it loads, nothing trained.

Why a mode: a PTQ baseline belongs in the same sweep, run directory, eval loop and study report as
the QAT and QAD arms it is compared with. The run scores the float student (pre), converts it with
`model.student.quantization` (int4_rtn: round to nearest; int4_qat gives the same rounding, since
nothing trains), scores the converted model (post) and saves it in final/ like any quantized run.
"""

from __future__ import annotations

from typing import Any

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts


class PTQMode(Mode):
    """Quantize the loaded student, score it before and after, save the quantized model."""

    trains = False
    trains_on_targets = False
    quantizes_without_training = True
    loss_note = "trains nothing"

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        problems = super().check(parts) + self.alpha_unused(parts, "trains nothing, so alpha is unused",
                                                            "drop the alpha override")
        if parts.cfg.model.student.get("quantization") is None:
            problems.append(ConfigProblem("model.student.quantization", "mode=ptq quantizes the student, but no "
                                          "quantization is chosen.", None,
                                          "add model.student.quantization=int4_rtn (round to nearest)"))
        return problems

    def build_trainer(self, components: Any, args: Any, runtime: Any) -> Any:
        raise RuntimeError("mode=ptq has no trainer: the pipeline converts the student and scores it")
