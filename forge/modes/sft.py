"""`mode=sft`: the student trains on cross-entropy only (alpha 0). The FAR study's baseline."""

from __future__ import annotations

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts
from forge.trainers.finetuning import FinetuningTrainer


class SFTMode(Mode):
    """Supervised fine-tuning of the student; no teacher, no distillation loss."""

    trainer_class = FinetuningTrainer
    loss_note = "trains on cross-entropy only"

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        return super().check(parts) + self.alpha_unused(parts, "means alpha 0 (cross-entropy only)",
                                                         "drop the alpha override, or use mode=kd")
