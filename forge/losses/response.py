"""Response (logit) distillation: the student matches the teacher's outputs.

All five losses share the row selection: sequence-level logits [B, C] give one row per example;
token-level logits [B, T, V] give one row per position where `batch.target_mask` is true (prompt
and padding positions are never selected, so they contribute exactly nothing). The loss is the mean
over rows. Teacher logits are detached here, so no loss can leak gradient into the teacher.
Logits are compared in float32: softmax over a large vocabulary in bf16 loses the tail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forge.config.errors import ConfigProblem
from forge.losses.divergence import kl_divergence
from forge.losses.base import (
    DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, mean_rows, select_positions,
)
from forge.models.info import ModelInfo


class ResponseLoss(DistillationLoss):
    """Shared machinery; subclasses implement `per_row(student_rows, teacher_rows) -> [N]`."""

    needs = Needs(logits=True)
    family = "response"

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def validate(self, student: ModelInfo, teacher: ModelInfo) -> list[ConfigProblem]:
        """Logits are compared element-wise, so both heads must have the same size. (An untrained
        teacher head is refused by `forge.plan`, which knows the teacher strategy.)"""
        key = self.config_key
        problems = []
        if student.output_size != teacher.output_size:
            problems.append(ConfigProblem(
                key=key, value=type(self).__name__,
                message=f"compares logits, which needs equal output sizes: student "
                        f"{student.output_size}, teacher {teacher.output_size}",
                fix="use a pair with the same labels/vocabulary, or a feature/attention loss",
            ))
        return problems

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        s_rows, t_rows = self.rows(student, teacher, batch)
        value = mean_rows(self.per_row(s_rows, t_rows))
        return LossOutput(total=value, components={self.family: value.detach()})

    @staticmethod
    def rows(
        student: ForwardView, teacher: ForwardView, batch: LossBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, C] student and (detached) teacher logits of the rows that count, in float32."""
        if student.logits is None or teacher.logits is None:
            raise ValueError("response losses need logits from both models (needs.logits)")
        s, t = student.logits, teacher.logits.detach()
        if s.shape != t.shape:
            raise ValueError(f"student logits {tuple(s.shape)} vs teacher {tuple(t.shape)}")
        if s.dim() == 3:
            # Token level. Without a target mask (encoder token tasks) every real token counts.
            mask = batch.target_mask if batch.target_mask is not None else batch.token_mask
            s, t = select_positions(s, mask), select_positions(t, mask)
        elif s.dim() != 2:
            raise ValueError(f"logits must be [B, C] or [B, T, V], got {tuple(s.shape)}")
        return s.float(), t.float()


class ResponseKL(ResponseLoss):
    """Hinton et al.: KL(p_t || p_s) of temperature-softened distributions, times T² so gradient
    magnitudes do not shrink as T grows."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_ps = F.log_softmax(student / T, dim=-1)
        log_pt = F.log_softmax(teacher / T, dim=-1)
        return kl_divergence(log_pt, log_ps) * T * T


class ResponseReverseKL(ResponseLoss):
    """KL(p_s || p_t) times T²: mode seeking, the student may drop teacher modes it cannot fit
    (MiniLLM's argument for small students)."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_ps = F.log_softmax(student / T, dim=-1)
        log_pt = F.log_softmax(teacher / T, dim=-1)
        return kl_divergence(log_ps, log_pt) * T * T


class ResponseCE(ResponseLoss):
    """-Σ p_t log p_s (soft-label cross-entropy) times T². Equals forward KL plus the teacher's
    entropy: same gradient as ResponseKL, but never zero unless the teacher is one-hot."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_ps = F.log_softmax(student / T, dim=-1)
        pt = F.softmax(teacher / T, dim=-1)
        return -(pt * log_ps).sum(-1) * T * T


class ResponseMSE(ResponseLoss):
    """Mean squared difference of raw logits (Ba & Caruana), averaged over classes.

    `temperature` is accepted so response losses are interchangeable, but it cancels out:
    MSE(s/T, t/T) * T² = MSE(s, t).
    """

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student - teacher).pow(2).mean(-1)


class ResponseCosine(ResponseLoss):
    """1 - cos(student logits, teacher logits): matches the direction of the logit vector and
    ignores its scale (so `temperature` has no effect)."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)
