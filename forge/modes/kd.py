"""`mode=kd`: loss = CE + alpha · distillation, with the loss group's object (response, feature,
attention and their composites) read from the teacher's forward pass, live or from the cache."""

from __future__ import annotations

from typing import Optional

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts, TeacherNeeds
from forge.teachers.cache.topk_store import TopKRequest
from forge.trainers.distillation import DistillationTrainer


class KDMode(Mode):
    """Knowledge distillation with a loss object; the teacher runs as a model (or its cached signals)."""

    needs_teacher = True
    uses_loss = True
    trainer_class = DistillationTrainer

    def teacher_needs(self, parts: PlanParts) -> TeacherNeeds:
        needs = parts.loss.needs
        return TeacherNeeds(via="model", dense_logits=needs.logits, hidden_states=needs.hidden_states,
                            attentions=needs.attentions)

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        problems = super().check(parts)
        if parts.capabilities is not None:
            missing = self.teacher_needs(parts).missing_in(parts.capabilities)
            if missing:
                problems.append(ConfigProblem(
                    "teacher_backend", f"loss={parts.loss_name} reads the teacher's {', '.join(missing)}, which "
                                       f"teacher_backend={parts.backend_name} cannot give (it gives: "
                                       f"{parts.capabilities.describe()}).", parts.backend_name,
                    "use teacher_backend=hf" + (", or mode=gkd (its loss reads only a top-k view)"
                                                if parts.capabilities.topk_logprobs else "")))
        return problems

    def cache_refusals(self, parts: PlanParts) -> list[str]:
        """Classification signals are stored per example; a decoder's response loss reads the
        top-k store when it reads a top-k view (`loss.top_k`), and nothing else is stored for it."""
        from forge.models.kinds import model_kind

        if model_kind(parts.kind).label_head or self.stored_view(parts) is not None:
            return []
        if parts.loss.needs.logits:
            return ["KD on a token-level model reads dense per-token logits over the whole vocabulary "
                    "(tens of thousands of floats per token): too large to store; a response loss with "
                    "loss.top_k=20 reads a stored top-20 view"]
        return ["the cache stores signals by tokenised classification inputs; a prompt → completion example is "
                "laid out by its collator (prompt + completion), which the store does not index"]

    def stored_view(self, parts: PlanParts) -> Optional[TopKRequest]:
        """A decoder's response loss with `top_k` reads the teacher's top-k view, which the store holds."""
        from forge.models.kinds import model_kind

        top_k = getattr(parts.loss, "top_k", None)
        return None if top_k is None or model_kind(parts.kind).label_head else TopKRequest(int(top_k))
