"""The in-process teacher: a Hugging Face causal LM in this process (`teacher_backend=hf`).

It can give everything: dense logits (the exact GKD loss), a top-k view (the same sparse view the
remote backends give), hidden states and attention maps (KD's feature/attention losses), and
generation (seq_kd). With `top_k: N` it gives only what a server with `max_k=N` gives (no dense
logits, views of at most N ids), so a run can be checked against a server teacher with the in-process
model: the config check then treats it exactly as it treats a server.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from forge.decoding.generation import generate_completions, positions_from_mask
from forge.losses.divergence import TopKView
from forge.teachers.backends.base import Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError

_EVERYTHING = Capabilities(dense_logits=True, topk_logprobs=True, hidden_states=True, attentions=True,
                           generate=True, images=True, image_scoring=True, tail_mass=True)


def _capabilities_for(top_k: Optional[int]) -> Capabilities:
    if top_k is None:
        return _EVERYTHING
    return Capabilities(dense_logits=False, topk_logprobs=True, hidden_states=True, attentions=True,
                        generate=True, images=True, image_scoring=True, max_k=int(top_k), tail_mass=True)


class HFTeacherBackend(TeacherBackend):
    """Wraps a frozen `PreTrainedModel` (the pipeline loads it and passes `model=`)."""

    name = "hf"
    CAPABILITIES = _EVERYTHING
    needs_local_model = True

    def __init__(self, model: Any, top_k: Optional[int] = None, name: str = "hf") -> None:
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"teacher_backend.top_k must be null or >= 1, got {top_k}")
        self.model = model
        self.top_k = None if top_k is None else int(top_k)
        self.name = name
        model.eval()
        model.requires_grad_(False)

    @property
    def capabilities(self) -> Capabilities:
        return _capabilities_for(self.top_k)

    @classmethod
    def declared_capabilities(cls, settings: Mapping[str, Any]) -> Capabilities:
        return _capabilities_for(settings.get("top_k"))

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
    def _forward_logits(self, request: ScoreRequest) -> torch.Tensor:
        device = self._device()
        mask = request.attention_mask.to(device)
        if request.vision is not None:  # multimodal RoPE numbers the positions from the mask itself
            vision = request.vision.to(device)
            extra = request.input_ids.shape[1] - vision.prompt_token_types.shape[1]
            return self.model(input_ids=request.input_ids.to(device), attention_mask=mask, use_cache=False,
                              **vision.model_kwargs(extra)).logits
        out = self.model(input_ids=request.input_ids.to(device), attention_mask=mask,
                         position_ids=positions_from_mask(mask), use_cache=False)
        return out.logits

    def logits(self, request: ScoreRequest) -> torch.Tensor:
        if self.top_k is not None:
            raise TeacherBackendError(f"teacher backend '{self.name}' is set to top_k={self.top_k} and gives no "
                                      "dense logits; set mode.trainer.top_k, or teacher_backend.top_k=null")
        return self._forward_logits(request)

    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView:
        if self.top_k is not None and k > self.top_k:
            raise TeacherBackendError(f"asked for a top-{k} view, but teacher backend '{self.name}' gives at most "
                                      f"{self.top_k} ids per position (teacher_backend.top_k)")
        return TopKView.from_logits(self._forward_logits(request), k, temperature)

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None, vision: Any = None) -> torch.Tensor:
        return generate_completions(self.model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens,
                                    temperature=temperature, do_sample=do_sample, eos_token_id=eos_token_id,
                                    vision=vision)

    def identity(self) -> dict[str, Any]:
        """The weights themselves (sha256): a path may hold other weights tomorrow."""
        from forge.teachers.cache.fingerprint import state_dict_fingerprint

        return {"backend": "hf", "weights": state_dict_fingerprint(self.model)}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(getattr(self.model.config, "name_or_path", "")),
                "top_k": self.top_k}
