"""The teacher's distribution seen through its top-k ids (`TopKView`): what every teacher backend
hands back, what the top-k store holds, and what the sparse divergences in
`forge.losses.divergence` compare against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F


def as_float(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64, so references in float64 compare tightly)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@dataclass(frozen=True)
class TopKView:
    """The teacher's distribution seen through its K most likely tokens at each position.

    token_ids: [B, T, K] long, ids in the *student's* vocabulary (teacher and student share a
      tokenizer in GKD; a backend that cannot guarantee that must map ids before building this).
    logprobs: [B, T, K] float, log-probabilities renormalised over the K ids (logsumexp over K
      is 0). A slot with logprob −inf is padding (a backend that returned fewer than K
      candidates): it is outside the support on both sides.
    temperature: the temperature these log-probabilities are softened at. Renormalised top-k
      log-probabilities can be re-tempered exactly (`at_temperature`), so backends that only
      report raw log-probabilities (vLLM, OpenAI `top_logprobs`) still serve any temperature.

    tail: [B, T] float or None: log of the teacher's mass outside the K ids (log(1 − Σ p_topk) of
      its full-vocabulary distribution at `temperature`), for losses with a tail bucket. Known
      only at the temperature it was taken at: `at_temperature` to another drops it.

    Every teacher backend returns one of these; raw backend log-probabilities (normalised over
    the full vocabulary) become a view with `TopKView(ids, raw).renormalized()`.
    """

    token_ids: torch.Tensor
    logprobs: torch.Tensor
    temperature: float = 1.0
    tail: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.token_ids.shape != self.logprobs.shape:
            raise ValueError(
                f"token_ids {tuple(self.token_ids.shape)} vs logprobs "
                f"{tuple(self.logprobs.shape)}"
            )
        if self.token_ids.dtype != torch.long:
            raise ValueError(f"token_ids must be int64, got {self.token_ids.dtype}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.tail is not None and self.tail.shape != self.token_ids.shape[:-1]:
            raise ValueError(f"tail {tuple(self.tail.shape)} vs positions {tuple(self.token_ids.shape[:-1])}")

    @property
    def k(self) -> int:
        return self.token_ids.shape[-1]

    @classmethod
    def from_logits(cls, logits: torch.Tensor, k: int, temperature: float = 1.0) -> "TopKView":
        """The top-k view of full logits [..., V] softened at `temperature` (the in-process
        backend; also the reference the remote backends are tested against)."""
        if not 1 <= k <= logits.shape[-1]:
            raise ValueError(f"k must be in [1, {logits.shape[-1]}], got {k}")
        with torch.no_grad():
            log_p = F.log_softmax(as_float(logits) / temperature, dim=-1)
            top = log_p.topk(k, dim=-1)
            tail = log_p.scatter(-1, top.indices, float("-inf")).logsumexp(-1)
        return cls(top.indices, top.values, temperature, tail).renormalized()

    def renormalized(self) -> "TopKView":
        """The same view with log-probabilities renormalised over the K ids (idempotent)."""
        logprobs = as_float(self.logprobs)
        return TopKView(self.token_ids, logprobs.log_softmax(dim=-1), self.temperature, self.tail)

    def rows(self, selector: Any) -> "TopKView":
        """The view of some positions (`selector` indexes the position dimensions: a slice, a mask)."""
        tail = None if self.tail is None else self.tail[selector]
        return TopKView(self.token_ids[selector], self.logprobs[selector], self.temperature, tail)

    def at_temperature(self, temperature: float) -> "TopKView":
        """The view softened at another temperature, exactly.

        Over the fixed K ids, log p_T0(i) = z_i/T0 − c, so log-softmax(log p_T0 · T0/T) over K is
        log-softmax(z/T) restricted to K and renormalised. The set of top-k ids does not change
        with temperature either (softmax(z/T) is monotone in z).
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if temperature == self.temperature:
            return self.renormalized()
        scaled = as_float(self.logprobs) * (self.temperature / temperature)
        return TopKView(self.token_ids, scaled.log_softmax(dim=-1), temperature)

    def to(self, device: torch.device | str) -> "TopKView":
        tail = None if self.tail is None else self.tail.to(device)
        return TopKView(self.token_ids.to(device), self.logprobs.to(device), self.temperature, tail)
