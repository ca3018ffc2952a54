"""The in-process teacher: a Hugging Face causal LM in this process (`teacher_backend=hf`).

It can give everything: dense logits (the exact GKD loss), a top-k view (the same sparse view the
remote backends give, so a run can be checked against a server teacher), hidden states and
attention maps (KD's feature/attention losses), and generation (seq_kd).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from forge.losses.divergence import TopKView
from forge.teachers.backends.base import Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """position_ids for sequences with padding anywhere: real tokens count 0, 1, 2, ...

    A forward pass (unlike `generate`) numbers positions 0..T-1 whatever the mask says, so a
    left-padded prompt would put its first real token at position 3 instead of 0 and the
    teacher's logits would differ from an unpadded run.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class HFTeacherBackend(TeacherBackend):
    """Wraps a frozen `PreTrainedModel` (the pipeline loads it and passes `model=`)."""

    name = "hf"
    CAPABILITIES = Capabilities(dense_logits=True, topk_logprobs=True, hidden_states=True,
                                attentions=True, generate=True)
    needs_local_model = True

    def __init__(self, model: Any, top_k: Optional[int] = None, name: str = "hf") -> None:
        self.model = model
        self.top_k = top_k
        self.name = name
        model.eval()
        model.requires_grad_(False)

    def check_tokenizer(self, tokenizer: Any) -> None:
        vocab = self.model.get_input_embeddings().num_embeddings
        if len(tokenizer) > vocab:
            raise TeacherBackendError(
                f"the student's tokenizer has {len(tokenizer)} tokens but the in-process teacher's "
                f"embedding has {vocab}: they do not share a vocabulary. Fix: pick a teacher with the "
                "student's tokenizer (the model group's pair)."
            )

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def logits(self, request: ScoreRequest) -> torch.Tensor:
        device = self._device()
        mask = request.attention_mask.to(device)
        out = self.model(input_ids=request.input_ids.to(device), attention_mask=mask,
                         position_ids=positions_from_mask(mask), use_cache=False)
        return out.logits

    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView:
        return TopKView.from_logits(self.logits(request), k, temperature)

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None) -> torch.Tensor:
        from forge.trainers.generation import generate_completions

        return generate_completions(self.model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens,
                                    temperature=temperature, do_sample=do_sample, eos_token_id=eos_token_id)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(getattr(self.model.config, "name_or_path", "")),
                "top_k": self.top_k}
