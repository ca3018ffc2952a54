"""`mode=kd`: loss = CE + alpha · distillation, with the loss object passed in.

The student, the loss (which owns trainable projections) and a co-trained teacher live in one
`DistillationModule`, so one optimizer trains them and one checkpoint holds them; a frozen teacher
is kept outside the module (no gradients, not in checkpoints). All math runs inside the module's
`forward` so that a data-parallel wrapper synchronises every trainable part.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from forge.data.base import model_inputs
from forge.losses.base import DistillationLoss, ForwardView, LossBatch
from forge.data.indexing import EXAMPLE_INDEX_KEY
from forge.trainers.base import ForgeTrainerMixin, TrainingRuntime, trainer_kwargs
from forge.trainers.components import TrainingComponents


def target_mask_for(logits: torch.Tensor, labels: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Positions whose logits predict a target token (token-level models only).

    Sequence-level logits [B, C] need no mask. For causal LMs, logits at position t predict the
    token at t+1, so the mask is `labels[:, 1:] != -100` shifted onto positions 0..T-2 (prompt and
    padding labels are -100 and thus excluded).
    """
    if logits.dim() != 3 or labels is None:
        return None
    mask = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask


def _view(outputs: Any, needs: Any) -> ForwardView:
    return ForwardView(
        logits=outputs.logits if needs.logits else None,
        hidden_states=tuple(outputs.hidden_states) if needs.hidden_states else None,
        attentions=tuple(outputs.attentions) if needs.attentions else None,
    )


def untie_for_saving(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in which no two tensors share storage (later repeats are cloned)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, tensor in state_dict.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.clone() if ident in seen else tensor
        seen.add(ident)
    return out


class DistillationModule(nn.Module):
    """Student + loss (+ co-trained teacher) as one trainable module.

    teacher_signals: a `CachedTeacherSignals` that replaces the frozen teacher's forward pass
    (the batch then carries `example_index`); the teacher itself may then be None.
    """

    def __init__(self, student: nn.Module, teacher: Optional[nn.Module], loss: DistillationLoss, *,
                 alpha: float, teacher_trainable: bool, teacher_signals: Any = None) -> None:
        super().__init__()
        self.student = student
        self.loss = loss
        self.alpha = float(alpha)
        self.teacher_trainable = teacher_trainable
        self.teacher_signals = teacher_signals  # not a module: neither trained nor saved
        if teacher_trainable and teacher_signals is not None:
            raise ValueError("a co-trained teacher cannot be read from a cache")
        if teacher is None:
            if teacher_signals is None and self._teacher_needed():
                raise ValueError("DistillationModule needs a teacher or cached teacher signals")
            object.__setattr__(self, "_frozen_teacher", None)
        elif teacher_trainable:
            self.teacher = teacher
        else:
            teacher.eval()
            teacher.requires_grad_(False)
            object.__setattr__(self, "_frozen_teacher", teacher)  # not a submodule: not trained, not saved

    @property
    def teacher_model(self) -> nn.Module:
        return self.teacher if self.teacher_trainable else self._frozen_teacher  # type: ignore[return-value]

    def _teacher_needed(self) -> bool:
        needs = self.loss.needs
        return self.teacher_trainable or needs.logits or needs.hidden_states or needs.attentions

    def _teacher_view(self, inputs: dict[str, torch.Tensor], example_index: Optional[torch.Tensor],
                      extra: dict[str, bool], target_mask: Optional[torch.Tensor]) -> tuple[ForwardView, Any]:
        """The teacher's outputs for this batch: read from the cache, or a forward pass."""
        needs = self.loss.needs
        if self.teacher_signals is not None:
            if example_index is None:
                raise ValueError("the batch has no example_index; cached teacher signals need IndexedCollator")
            return self.teacher_signals.forward_view(example_index, inputs["attention_mask"], target_mask), None
        teacher = self.teacher_model
        teacher_inputs = inputs if self.teacher_trainable else {k: v for k, v in inputs.items() if k != "labels"}
        with torch.set_grad_enabled(self.teacher_trainable and torch.is_grad_enabled()):
            teacher_out = teacher(**teacher_inputs, **extra)
        return _view(teacher_out, needs), teacher_out

    def forward(self, step: int = 0, example_index: Optional[torch.Tensor] = None,
                **inputs: torch.Tensor) -> dict[str, Any]:
        needs = self.loss.needs
        extra = {"output_hidden_states": needs.hidden_states, "output_attentions": needs.attentions}
        student_out = self.student(**inputs, **extra)
        ce = student_out.loss
        components: dict[str, torch.Tensor] = {"ce": ce.detach()}
        total = ce
        if self._teacher_needed():
            target_mask = target_mask_for(student_out.logits, inputs.get("labels"))
            teacher_view, teacher_out = self._teacher_view(inputs, example_index, extra, target_mask)
            batch = LossBatch(
                token_mask=inputs["attention_mask"].bool(),
                target_mask=target_mask,
                # token-level (causal LM): feature/attention rows only at target tokens, too
                query_mask=None if target_mask is None else inputs["labels"] != -100,
            )
            distill = self.loss(_view(student_out, needs), teacher_view, batch, step)
            total = total + self.alpha * distill.total
            components["distill"] = distill.total.detach()
            components.update({k: v.detach() if torch.is_tensor(v) else v for k, v in distill.components.items()})
            if self.teacher_trainable:
                total = total + teacher_out.loss
                components["teacher_ce"] = teacher_out.loss.detach()
        return {"loss": total, "components": components, "logits": student_out.logits}


class DistillationTrainer(ForgeTrainerMixin, Trainer):
    """Trains a `DistillationModule`; logs CE, distillation and each loss component."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, runtime: Optional[TrainingRuntime] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_forge(runtime)
        module = self.model
        if isinstance(module, DistillationModule) and not module.teacher_trainable and module.teacher_model is not None:
            module.teacher_model.to(self.args.device)

    @classmethod
    def from_components(cls, components: TrainingComponents, args: TrainingArguments,
                        runtime: Optional[TrainingRuntime] = None, **kwargs: Any) -> "DistillationTrainer":
        if components.loss is None:
            raise ValueError("DistillationTrainer needs a loss object")
        module = DistillationModule(
            components.student, components.teacher, components.loss,
            alpha=components.alpha, teacher_trainable=components.teacher_trainable,
            teacher_signals=components.teacher_signals,
        )
        return cls(
            model=module,
            args=args,
            train_dataset=components.train_dataset,
            data_collator=components.collator,
            processing_class=components.tokenizer,
            runtime=runtime,
            **trainer_kwargs(runtime),
            **kwargs,
        )

    def model_to_evaluate(self) -> nn.Module:
        return self.model.student

    def _save(self, output_dir: Optional[str] = None, state_dict: Optional[dict] = None) -> None:
        """The module is not a PreTrainedModel, so Trainer writes its state dict with safetensors,
        which refuses tensors sharing memory (a decoder's tied embedding and LM head). Copies of
        the repeats are saved instead; loading writes the same values into the tied parameter."""
        if state_dict is None:
            state_dict = untie_for_saving(self.model.state_dict())
        super()._save(output_dir, state_dict=state_dict)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        outputs = model(step=self.state.global_step, example_index=inputs.get(EXAMPLE_INDEX_KEY),
                        **model_inputs(inputs))
        self.guard_loss(outputs["loss"], outputs["components"])
        self.record_components(outputs["components"])
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]
