"""`mode=sft`: cross-entropy only (alpha 0). Also fine-tunes the teacher for the *_sft strategies."""

from __future__ import annotations

from typing import Any, Optional

from transformers import Trainer, TrainingArguments

from forge.data.base import model_inputs
from forge.trainers.base import ForgeTrainerMixin, TrainingRuntime, trainer_kwargs
from forge.trainers.components import TrainingComponents


class FinetuningTrainer(ForgeTrainerMixin, Trainer):
    """Plain supervised training of `components.student` on the task's labels."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, runtime: Optional[TrainingRuntime] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_forge(runtime)

    @classmethod
    def from_components(cls, components: TrainingComponents, args: TrainingArguments,
                        runtime: Optional[TrainingRuntime] = None, **kwargs: Any) -> "FinetuningTrainer":
        return cls(
            model=components.student,
            args=args,
            train_dataset=components.train_dataset,
            data_collator=components.collator,
            processing_class=components.tokenizer,
            runtime=runtime,
            **trainer_kwargs(runtime),
            **kwargs,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        outputs = model(**model_inputs(inputs))
        loss = outputs.loss
        self.guard_loss(loss, {"ce": loss})
        self.record_components({"ce": loss})
        return (loss, outputs) if return_outputs else loss
