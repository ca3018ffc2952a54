"""Attention distillation: KL(teacher attention row || student attention row) over mapped blocks.

Each query row of an attention map is a distribution over keys. Only rows of real query tokens
count (`batch.rows_mask`: target tokens for a causal LM), and padding keys are dropped from the sum (they carry ~0 probability
anyway; dropping them makes the loss independent of whatever sits there). Probabilities are clamped
before the log so an exact zero in the student (e.g. a causal mask) cannot produce inf.

Heads: `average` compares the head-averaged maps (any head counts); `match` compares head h with
head h (equal head counts only).
"""

from __future__ import annotations

from typing import Any

import torch

from forge.config.errors import ConfigProblem
from forge.config.loss_schema import HeadMap
from forge.losses.base import (
    DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, TeacherLayers, mean_rows, select_positions,
)
from forge.losses.layer_map import LayerMapSpec, enum_value, layer_pairs, validate_layer_map
from forge.models.info import ModelInfo



class AttentionKL(DistillationLoss):
    """Mean over mapped blocks of the mean over real query rows of KL(a_t || a_s)."""

    needs = Needs(attentions=True)
    family = "attention"

    def __init__(
        self, layer_map: Any = None, head_map: HeadMap | str = "average", eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.layer_map = LayerMapSpec.coerce(layer_map)
        self.head_map = HeadMap(enum_value(head_map))
        self.eps = float(eps)
        self.pairs: list[tuple[int, int]] = []

    def validate(self, student: ModelInfo, teacher: ModelInfo) -> list[ConfigProblem]:
        key = self.config_key
        problems = validate_layer_map(
            self.layer_map, student.num_layers, teacher.num_layers,
            first_index=1, key=f"{key}.layer_map",
        )
        if self.head_map is HeadMap.match and student.num_heads != teacher.num_heads:
            problems.append(ConfigProblem(
                key=f"{key}.head_map", value=self.head_map.value,
                message=f"head_map=match compares head h with head h and needs equal head counts: "
                        f"student {student.num_heads}, teacher {teacher.num_heads}",
                fix=f"set {key}.head_map=average",
            ))
        return problems

    def bind(self, student: ModelInfo, teacher: ModelInfo) -> None:
        self.ensure_valid(student, teacher)
        self.pairs = layer_pairs(
            self.layer_map, student.num_layers, teacher.num_layers, first_index=1
        )

    def teacher_layers(self) -> TeacherLayers:
        return TeacherLayers(attentions=frozenset(t - 1 for _, t in self.pairs))

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        if not self.pairs:
            raise RuntimeError("AttentionKL.bind(student, teacher) was not called")
        if student.attentions is None or teacher.attentions is None:
            raise ValueError("attention_kl needs attentions from both models (eager attention)")
        mask = batch.rows_mask.bool()
        keys = batch.token_mask.bool()
        # Key mask of each selected query row: [N, T_keys] (prompt keys count: targets attend to them).
        key_mask = select_positions(keys[:, None, :].expand(-1, keys.shape[1], -1), mask)
        values = []
        for s_idx, t_idx in self.pairs:
            a_s = self._rows(student.attentions[s_idx - 1], mask)
            a_t = self._rows(teacher.attentions[t_idx - 1].detach(), mask)
            values.append(mean_rows(self._row_kl(a_s, a_t, key_mask)))
        value = torch.stack(values).mean()
        return LossOutput(total=value, components={self.family: value.detach()})

    def _rows(self, attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, H, Tq, Tk] -> rows of real queries: [N, H, Tk] (match) or [N, 1, Tk] (average)."""
        attn = attn.float()
        if self.head_map is HeadMap.average:
            attn = attn.mean(dim=1, keepdim=True)
        return select_positions(attn.transpose(1, 2), mask)

    def _row_kl(self, a_s: torch.Tensor, a_t: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Σ_k a_t (log a_t - log a_s) over real keys, averaged over heads: [N]."""
        if a_s.shape[1] != a_t.shape[1]:
            raise ValueError(
                f"head_map=match needs equal head counts, got {a_s.shape[1]} and {a_t.shape[1]}"
            )
        log_ratio = torch.log(a_t.clamp_min(self.eps)) - torch.log(a_s.clamp_min(self.eps))
        terms = a_t * log_ratio * key_mask[:, None, :].to(a_t.dtype)
        return terms.sum(-1).mean(-1)
