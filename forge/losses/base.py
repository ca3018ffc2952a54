"""The contract every distillation loss follows.

A loss is an `nn.Module` (so projections it owns are trained with the student and saved with it).
It declares what it needs from the forward passes (`needs`), so that the trainer computes nothing
else: attention maps force eager attention and cost time and memory. The trainer never branches on
a loss's name; it asks `needs`, runs the models, and calls the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch
from torch import nn

from forge.config.errors import ConfigProblem
from forge.losses.divergence import TopKView
from forge.models.info import ModelInfo


@dataclass(frozen=True)
class Needs:
    """Which model outputs a loss reads. Composites take the union of their parts."""

    logits: bool = False
    hidden_states: bool = False
    attentions: bool = False

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(
            logits=self.logits or other.logits,
            hidden_states=self.hidden_states or other.hidden_states,
            attentions=self.attentions or other.attentions,
        )


@dataclass(frozen=True)
class TeacherLayers:
    """Which of the teacher's layers a bound loss reads, so a cache stores those and no others.

    hidden: indices into `hidden_states` (0 = embeddings); attentions: indices into `attentions`
    (0 = first block). None means "every layer" (a loss that does not say which).
    """

    hidden: Optional[frozenset[int]] = frozenset()
    attentions: Optional[frozenset[int]] = frozenset()

    def __or__(self, other: "TeacherLayers") -> "TeacherLayers":
        def union(a: Optional[frozenset[int]], b: Optional[frozenset[int]]) -> Optional[frozenset[int]]:
            return None if a is None or b is None else a | b

        return TeacherLayers(union(self.hidden, other.hidden), union(self.attentions, other.attentions))


@dataclass
class ForwardView:
    """The parts of one model's forward pass that losses read.

    logits: [B, C] for sequence classification or [B, T, V] for token-level models.
    hidden_states: tuple of [B, T, H], index 0 = embeddings (num_layers + 1 entries) or None.
    attentions: tuple of [B, heads, T, T] probabilities (num_layers entries) or None.
    topk: a teacher's `TopKView` of the rows that count ([N, K], in the order `select_positions`
      gives them) where the teacher is read from the top-k store instead of its logits.
    """

    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    topk: "TopKView | None" = None


@dataclass
class LossBatch:
    """Masks shared by every loss.

    token_mask: [B, T] bool, real (non-padding) tokens: the keys attention rows are compared over.
    target_mask: [B, T] bool for token-level logits (True where the position predicts a target
      token: prompt and padding excluded), or None for sequence-level logits ([B, C]).
    query_mask: [B, T] bool, the positions whose hidden states / attention rows feature and
      attention losses compare; None means every real token. Causal LMs set it to the target
      tokens, so with a prompt no KD loss of any family is taken on prompt positions.
    """

    token_mask: torch.Tensor
    target_mask: torch.Tensor | None = None
    query_mask: torch.Tensor | None = None

    @property
    def rows_mask(self) -> torch.Tensor:
        """Positions feature and attention losses compare (query_mask, else every real token)."""
        return self.query_mask if self.query_mask is not None else self.token_mask


@dataclass
class LossOutput:
    """Weighted distillation total plus each named component (unweighted, detached for logging)."""

    total: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)


class DistillationLoss(nn.Module):
    """Base class: subclasses set `needs`, implement `compute`, and may override `validate`/`bind`.

    Lifecycle: `validate(student, teacher)` runs at config time on `ModelInfo` read from configs
    (no weights) and returns problems; `bind(student, teacher)` then builds layer maps and trainable
    projections; `forward(student_view, teacher_view, batch, step)` returns a `LossOutput`.
    """

    needs: Needs = Needs()
    name: str = "loss"
    # Where this loss's settings live in the composed config; problems are reported under it.
    # Composites set their parts' keys to e.g. "loss.feature": messages name the key to override.
    config_key: str = "loss"

    def validate(self, student: ModelInfo, teacher: ModelInfo) -> list[ConfigProblem]:
        return []

    def bind(self, student: ModelInfo, teacher: ModelInfo) -> None:
        """Build layer maps / projections for this pair. Default: nothing to build."""

    def teacher_layers(self) -> TeacherLayers:
        """The teacher layers this (bound) loss reads. Default: every layer of each kind it needs;
        layer-mapped losses override it with their mapped layers."""
        return TeacherLayers(hidden=None if self.needs.hidden_states else frozenset(),
                             attentions=None if self.needs.attentions else frozenset())

    def ensure_valid(self, student: ModelInfo, teacher: ModelInfo) -> None:
        """Raise the `validate` problems, for `bind` implementations called outside the pipeline."""
        from forge.config.errors import ConfigError

        problems = self.validate(student, teacher)
        if problems:
            raise ConfigError(problems)

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        raise NotImplementedError

    def forward(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int = 0
    ) -> LossOutput:
        return self.compute(student, teacher, batch, step)


class NoDistillation(DistillationLoss):
    """`loss=ce`: the FAR study's control arm. Reads nothing, contributes zero."""

    name = "ce"

    def compute(self, student, teacher, batch, step) -> LossOutput:  # noqa: D401
        ref = batch.token_mask
        return LossOutput(total=torch.zeros((), device=ref.device), components={})


ComponentWeights = Mapping[str, float]


def select_positions(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows of `x` ([B, T, ...]) where `mask` ([B, T]) is true, as [N, ...].

    Losses index instead of multiplying by the mask, so masked positions contribute exactly
    nothing (not even NaN * 0) and get exactly zero gradient.
    """
    return x[mask.to(device=x.device, dtype=torch.bool)]


def mean_rows(values: torch.Tensor) -> torch.Tensor:
    """Mean of per-row losses; 0 (still attached to the graph) when no row was selected."""
    return values.sum() / max(values.shape[0], 1)
