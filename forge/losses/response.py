"""Response (logit) distillation: the student matches the teacher's outputs.

All five losses share the row selection: sequence-level logits [B, C] give one row per example;
token-level logits [B, T, V] give one row per position where `batch.target_mask` is true (prompt
and padding positions are never selected, so they contribute exactly nothing). The loss is the mean
over rows. Teacher logits are detached here, so no loss can leak gradient into the teacher.
Logits are compared in float32: softmax over a large vocabulary in bf16 loses the tail.

With `top_k` the divergences (forward KL, reverse KL, soft CE) read the teacher's top-k view
instead: both sides restricted to the teacher's K most likely ids and renormalised over them
(`forge.losses.divergence.topk_log_probs` says why). The view comes from the teacher's logits in
this process, or from the teacher-signal cache's top-k store (`ForwardView.topk`), which is how a
decoder's KD is cached at all: a vocabulary-sized row per token is too large to store. MSE and
cosine compare raw logits, which a view of log-probabilities does not hold, so they refuse it.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from forge.config.errors import ConfigProblem
from forge.losses.divergence import TopKView, kl_divergence, topk_generalized_jsd, topk_log_probs
from forge.losses.base import (
    DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, mean_rows, select_positions,
)
from forge.models.info import ModelInfo


def _counted(batch: LossBatch) -> torch.Tensor:
    """The token-level positions that count: the targets; without a target mask (encoder token
    tasks) every real token."""
    return batch.target_mask if batch.target_mask is not None else batch.token_mask


class ResponseLoss(DistillationLoss):
    """Shared machinery; subclasses implement `per_row(student_rows, teacher_rows) -> [N]`."""

    needs = Needs(logits=True)
    family = "response"
    #: defined on a teacher's top-k view (`per_row_topk`)
    reads_topk = False

    def __init__(self, temperature: float = 2.0, top_k: Optional[int] = None) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.temperature = float(temperature)
        self.top_k = None if top_k is None else int(top_k)

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
        if self.top_k is not None and not self.reads_topk:
            problems.append(ConfigProblem(
                key="loss.top_k", value=self.top_k,
                message=f"{type(self).__name__} compares raw logits, which a top-k view of the teacher's "
                        "log-probabilities does not hold",
                fix="set loss.top_k=null, or use loss=response_kl, response_reverse_kl or response_ce",
            ))
        elif self.top_k is not None and self.top_k > student.output_size:
            problems.append(ConfigProblem(key="loss.top_k", value=self.top_k,
                                          message=f"exceeds the output size ({student.output_size})",
                                          fix=f"use loss.top_k<={student.output_size}"))
        return problems

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def per_row_topk(self, student: torch.Tensor, view: TopKView) -> torch.Tensor:
        """[N] losses of student rows [N, V] against the teacher's view of them [N, K]."""
        raise NotImplementedError(f"{type(self).__name__} is not defined on a top-k view")

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        if self.top_k is not None or teacher.topk is not None:
            per_row = self.per_row_topk(*self.topk_rows(student, teacher, batch))
        else:
            per_row = self.per_row(*self.rows(student, teacher, batch))
        value = mean_rows(per_row)
        return LossOutput(total=value, components={self.family: value.detach()})

    def topk_rows(self, student: ForwardView, teacher: ForwardView, batch: LossBatch) -> tuple[torch.Tensor, TopKView]:
        """[N, V] student logits of the rows that count and the teacher's [N, K] view of them: the
        stored one, or the top-k of its logits."""
        if teacher.topk is None:
            s_rows, t_rows = self.rows(student, teacher, batch)
            return s_rows, TopKView.from_logits(t_rows, self.top_k or t_rows.shape[-1])
        if student.logits is None:
            raise ValueError("response losses need the student's logits (needs.logits)")
        s_rows = student.logits
        if s_rows.dim() == 3:
            s_rows = select_positions(s_rows, _counted(batch))
        if s_rows.shape[0] != teacher.topk.token_ids.shape[0]:
            raise ValueError(f"{s_rows.shape[0]} student rows vs a teacher view of {teacher.topk.token_ids.shape[0]}")
        return s_rows.float(), teacher.topk

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
            mask = _counted(batch)
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

    reads_topk = True

    def per_row_topk(self, student: torch.Tensor, view: TopKView) -> torch.Tensor:
        return topk_generalized_jsd(student, view, beta=0.0, temperature=self.temperature, reduction="none",
                                    scale_t2=True)


class ResponseReverseKL(ResponseLoss):
    """KL(p_s || p_t) times T²: mode seeking, the student may drop teacher modes it cannot fit
    (MiniLLM's argument for small students)."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_ps = F.log_softmax(student / T, dim=-1)
        log_pt = F.log_softmax(teacher / T, dim=-1)
        return kl_divergence(log_ps, log_pt) * T * T

    reads_topk = True

    def per_row_topk(self, student: torch.Tensor, view: TopKView) -> torch.Tensor:
        return topk_generalized_jsd(student, view, beta=1.0, temperature=self.temperature, reduction="none",
                                    scale_t2=True)


class ResponseCE(ResponseLoss):
    """-Σ p_t log p_s (soft-label cross-entropy) times T². Equals forward KL plus the teacher's
    entropy: same gradient as ResponseKL, but never zero unless the teacher is one-hot."""

    def per_row(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_ps = F.log_softmax(student / T, dim=-1)
        pt = F.softmax(teacher / T, dim=-1)
        return -(pt * log_ps).sum(-1) * T * T

    reads_topk = True

    def per_row_topk(self, student: torch.Tensor, view: TopKView) -> torch.Tensor:
        """Over the K ids: forward KL plus the teacher's entropy on them (padding slots count 0)."""
        T = self.temperature
        log_ps, log_pt = topk_log_probs(student, view, T)
        pt = log_pt.exp()
        return -(pt * log_ps.masked_fill(pt == 0, 0.0)).sum(-1) * T * T


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
