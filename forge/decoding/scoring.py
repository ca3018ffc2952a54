"""What a trainer asks a teacher for, and what it may get back, without knowing who the teacher is.

The GKD trainer (and later RL rewards) score token sequences through a teacher backend; backends
(`forge.teachers.backends`) implement the request. Both sides import this floor, never each other.

Position convention (the same as a causal LM's logits): for a sequence of token ids x[0..T-1],
position t of a view holds the teacher's distribution of x[t+1] given x[0..t].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import torch

from forge.config.errors import ForgeFailure
from forge.losses.divergence import TopKView


class TeacherBackendError(ForgeFailure):
    """The teacher cannot be used as configured (tokenizer mismatch, missing capability). Not retried."""


class TeacherServerError(TeacherBackendError):
    """A remote teacher failed after its retries (timeouts, HTTP 5xx, malformed payloads).

    The message names the server, the request that failed, how often it was tried and the last
    cause, so the run stops with a clear error instead of training on a silent zero loss.
    """


@dataclass
class ScoreRequest:
    """Sequences to score: right-aligned or left-padded token ids in the *student's* vocabulary.

    input_ids / attention_mask: [B, T]; padding positions have mask 0 (left or right padding).
    positions: [B, T] bool, the positions whose next-token distribution is wanted (e.g. the
      positions predicting completion tokens); None means every real position but the last.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: Optional[torch.Tensor] = None
    #: the prompt's image side (`forge.decoding.vision.VisionInputs`) when the sequences begin with
    #: a page prompt; None for text.
    vision: Any = None

    def wanted(self) -> torch.Tensor:
        if self.positions is not None:
            return self.positions.bool()
        mask = self.attention_mask.bool()
        wanted = mask.clone()
        wanted[:, :-1] &= mask[:, 1:]  # a position counts if the next one is a real token
        wanted[:, -1] = False
        return wanted


class TeacherScorer(Protocol):
    """The part of a teacher backend a trainer uses (`forge.teachers.backends.base.TeacherBackend`)."""

    name: str

    @property
    def capabilities(self) -> Any: ...

    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView: ...

    def logits(self, request: ScoreRequest) -> torch.Tensor: ...

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None, vision: Any = None) -> torch.Tensor: ...
