"""The contract every teacher backend follows.

Why an object: the GKD trainer and the KD module must not care whether the teacher runs in this
process, behind vLLM, or behind a hosted OpenAI-compatible API. Each backend hands back the same
sparse `TopKView` of the teacher's next-token distribution, and declares up front what it can give
(`Capabilities`), so a loss that needs more (hidden states from an API teacher) is refused when the
config is checked, not an hour into a run.

Position convention (the same as a causal LM's logits): for a sequence of token ids x[0..T-1],
position t of a view holds the teacher's distribution of x[t+1] given x[0..t]. A backend that
cannot produce position t's distribution (nothing precedes x[0] for some servers) never has to:
callers only ask for the positions they score (`ScoreRequest.positions`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch

from forge.decoding.scoring import ScoreRequest, TeacherBackendError, TeacherServerError
from forge.losses.divergence import TopKView

__all__ = ["Capabilities", "ScoreRequest", "TeacherBackend", "TeacherBackendError", "TeacherServerError"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can give. Losses declare what they need (`forge.losses.base.Needs`)."""

    dense_logits: bool = False  # the full [B, T, V] logits
    topk_logprobs: bool = False  # a TopKView over any K up to `max_k`
    hidden_states: bool = False
    attentions: bool = False
    generate: bool = False  # sample / greedy completions (seq_kd)
    images: bool = False  # takes page prompts in generation (`generate(vision=...)`)
    image_scoring: bool = False  # and scores them too (`ScoreRequest.vision`): an in-process model
    max_k: Optional[int] = None  # None: any K up to the vocabulary
    tail_mass: bool = False  # its top-k views hold the mass outside the K ids (`TopKView.tail`)

    def for_prompts(self, *, images: bool) -> "Capabilities":
        """What the backend gives for a task's prompts. Page prompts keep the token outputs only where
        the backend scores images: a chat server takes a page for generation, but no chat endpoint
        returns the log-probabilities of a prompt's tokens, so for pages it is generation-only."""
        if not images or self.image_scoring:
            return self
        return dataclasses.replace(self, dense_logits=False, topk_logprobs=False, hidden_states=False,
                                   attentions=False, max_k=None, tail_mass=False)

    def missing_for(self, *, logits: bool = False, hidden_states: bool = False,
                    attentions: bool = False, topk: bool = False, generate: bool = False) -> list[str]:
        """Names of the requested outputs this backend cannot give (empty: all fine)."""
        wanted = {
            "dense logits": (logits, self.dense_logits),
            "hidden states": (hidden_states, self.hidden_states),
            "attention maps": (attentions, self.attentions),
            "top-k log-probabilities": (topk, self.topk_logprobs),
            "generation": (generate, self.generate),
        }
        return [name for name, (want, have) in wanted.items() if want and not have]

    def describe(self) -> str:
        """What the backend gives, in words (for messages)."""
        given = [name for name, have in (
            ("dense logits", self.dense_logits), ("top-k log-probabilities", self.topk_logprobs),
            ("the mass outside the top k", self.tail_mass),
            ("hidden states", self.hidden_states), ("attention maps", self.attentions),
            ("generation", self.generate),
            (self._images_in_words(), self.images)) if have]
        return ", ".join(given) or "nothing"

    def _images_in_words(self) -> str:
        scores_text = self.dense_logits or self.topk_logprobs
        return "page images for generation only" if scores_text and not self.image_scoring else "page images"


class TeacherBackend(ABC):
    """Base class. Subclasses set `CAPABILITIES`, implement `topk` and, where they can, `generate`.

    `CAPABILITIES` is a class attribute so the config check can read it without building the
    backend (no model loaded, no connection opened). `needs_local_model`: the pipeline loads the
    teacher's weights in-process and passes them as `model=` (the hf backend); remote backends
    never load the teacher's weights.
    """

    name: str = "backend"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()
    needs_local_model: ClassVar[bool] = False

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can give (checked against the loss at config time)."""
        return self.CAPABILITIES

    @classmethod
    def declared_capabilities(cls, settings: Mapping[str, Any]) -> Capabilities:
        """What a backend built from `settings` (its config node) will give, read at config time
        without building it. Override when a setting changes it (a server's `max_k`)."""
        return cls.CAPABILITIES

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise TeacherBackendError if the teacher does not share `tokenizer`'s vocabulary.

        Called once at start: token-level distillation maps teacher tokens to student ids by
        position, which is only correct with one tokenizer.
        """

    def adopt_tokenizer(self, tokenizer: Any) -> None:
        """Take the student's tokenizer for a run that only reads generations (their text is tokenized
        with it). Backends whose `check_tokenizer` probes a token-level contract override this to skip
        the probe; by default it is that check."""
        self.check_tokenizer(tokenizer)

    @abstractmethod
    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView:
        """The teacher's top-k next-token view, [B, T, K], at the requested positions.

        Positions not requested may hold anything valid (e.g. logprob −inf padding with id 0);
        callers mask them out. Log-probabilities are renormalised over the K ids and softened
        at `temperature`.
        """

    def logits(self, request: ScoreRequest) -> torch.Tensor:
        """Dense [B, T, V] logits (only backends with `capabilities.dense_logits`)."""
        raise TeacherBackendError(f"teacher backend '{self.name}' cannot give dense logits")

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None, vision: Any = None) -> torch.Tensor:
        """Completions for left-padded prompts: [B, C] new token ids (C ≤ max_new_tokens), right-
        padded with the pad id after EOS. Only backends with `capabilities.generate`.

        vision: the prompts' pages (`forge.decoding.vision.VisionInputs`: pixel tensors for an
        in-process model, `images()` for a teacher that reads the page itself, one per prompt row),
        only for backends with `capabilities.images`. A backend that cannot take them raises
        TeacherBackendError when given them (`refuse_images`) rather than answer from the text alone.
        """
        raise TeacherBackendError(f"teacher backend '{self.name}' cannot generate")

    def refuse_images(self, vision: Any) -> None:
        """Raise TeacherBackendError when a text-only backend is handed page prompts."""
        if vision is not None:
            raise TeacherBackendError(
                f"teacher backend '{self.name}' reads text only and cannot take the page images of these prompts; "
                "use teacher_backend=hf (the model pair's teacher), vlm_server (a chat server that reads pages) "
                "or tesseract")

    def identity(self) -> dict[str, Any]:
        """What the teacher's answers depend on, for stores keyed by content (`forge.teachers.cache`):
        by default the served model's name and address as `describe` records them. Timeouts and
        retries are left out; they do not change an answer."""
        described = self.describe()
        return {key: described[key] for key in ("backend", "base_url", "model") if key in described}

    def close(self) -> None:
        """Release connections / memory. Idempotent."""

    def describe(self) -> dict[str, Any]:
        """What to record in run_metadata.json (never a secret: no API key)."""
        return {"backend": self.name}
