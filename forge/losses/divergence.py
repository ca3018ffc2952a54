"""Divergences between a student and a teacher distribution, dense or from a sparse top-k view.

These are plain functions on tensors, not `DistillationLoss` modules: the GKD mode calls them on
its own forward passes, and the teacher backends (in-process hf, vLLM, an OpenAI-compatible
server) all hand back the same `TopKView`, so the loss does not care where the teacher ran.

Conventions (shared by every function here):

* `generalized_jsd` reproduces TRL's `GKDTrainer.generalized_jsd_loss` exactly (Eq. 1 of GKD,
  Agarwal et al. 2023, arXiv 2306.13649, with TRL's choice of which side β weights):
  m = β·p_teacher + (1−β)·p_student and JSD(β) = β·KL(p_teacher‖m) + (1−β)·KL(p_student‖m);
  β = 0 is *defined* as forward KL(p_teacher‖p_student) and β = 1 as reverse
  KL(p_student‖p_teacher).
  Those endpoints are not the limits of the interior values (JSD(β) → 0 at both ends,
  JSD(β) ≈ β·KL(t‖s) near 0 and ≈ (1−β)·KL(s‖t) near 1); they are the limits of JSD(β)/β and
  JSD(β)/(1−β). TRL does it this way, so Forge does too.
* Temperature divides both sides' logits. TRL does not multiply by T² (Forge's `ResponseKL` does,
  after Hinton, so gradient sizes do not shrink as T grows); `scale_t2=True` opts in.
* A mask ([...] = logits.shape[:-1], True = counts) *selects* positions before anything is
  computed, as `forge.losses.base.select_positions` does: masked positions contribute exactly
  nothing and get exactly zero gradient. TRL's `labels` become `mask=label_mask(labels)`.
* Everything is computed in log space in at least float32 (softmax over a large vocabulary in
  bf16 loses the tail). Each KL term p·(log p − log q) is taken as 0 where p = 0 — also where
  log p = −inf (a −inf logit, a padding slot of a top-k view) — in value and in gradient, so
  underflow never makes a NaN.
* The teacher side is not detached here: a function should not decide what is trainable. Loss
  modules detach the teacher before calling (as `ResponseLoss.rows` does); `TopKView`s from
  backends carry no graph anyway.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from forge.losses.topk_view import TopKView, as_float as _as_float

Reduction = Literal["batchmean", "sum", "none", "mean_over_tokens"]
_REDUCTIONS = ("batchmean", "sum", "none", "mean_over_tokens")
IGNORE_INDEX = -100


# --------------------------------------------------------------------------------------------
# Building blocks


def label_mask(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """TRL's masking: a position counts unless its (already shifted) label is `ignore_index`."""
    return labels != ignore_index


def _kl_terms(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Elementwise p·(log p − log q), exactly 0 where p = 0, with a finite gradient there.

    F.kl_div(log_target=True) computes exp(t)·(t − x), which is 0·(−inf) = NaN where the target
    log-probability is −inf. Swapping in harmless values *before* the arithmetic (not only
    after, which would still backpropagate NaN through the discarded branch) avoids that.
    """
    absent = log_p == float("-inf")
    safe_log_p = log_p.masked_fill(absent, 0.0)
    safe_log_q = log_q.masked_fill(absent, 0.0)
    terms = safe_log_p.exp() * (safe_log_p - safe_log_q)
    return terms.masked_fill(absent, 0.0)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) over the last dimension, from log-probabilities: shape [...]. NaN-safe where p has
    no mass (see `_kl_terms`); every KL in Forge's losses goes through it."""
    return _kl_terms(log_p, log_q).sum(-1)


def _mixture_log_probs(
    log_pt: torch.Tensor, log_ps: torch.Tensor, beta: float
) -> torch.Tensor:
    """log(β·p_t + (1−β)·p_s) by logsumexp, so tiny probabilities do not round to log 0."""
    return torch.logaddexp(log_pt + math.log(beta), log_ps + math.log1p(-beta))


def _jsd_per_position(log_ps: torch.Tensor, log_pt: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalized JSD(β) per position, from normalised log-probabilities [..., V] -> [...]."""
    if beta == 0.0:
        return kl_divergence(log_pt, log_ps)  # forward KL(teacher ‖ student): mode covering
    if beta == 1.0:
        return kl_divergence(log_ps, log_pt)  # reverse KL(student ‖ teacher): mode seeking
    # Where neither side has mass, logaddexp(−inf, −inf) has a NaN gradient; the mixture's value
    # there is never read (both KL terms are 0), so feed it zeros instead.
    neither = (log_pt == float("-inf")) & (log_ps == float("-inf"))
    log_m = _mixture_log_probs(
        log_pt.masked_fill(neither, 0.0), log_ps.masked_fill(neither, 0.0), beta
    )
    return beta * kl_divergence(log_pt, log_m) + (1.0 - beta) * kl_divergence(log_ps, log_m)


def _check_args(beta: float, temperature: float, reduction: str) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_mask(mask: Optional[torch.Tensor], positions: torch.Size) -> None:
    if mask is not None and mask.shape != positions:
        raise ValueError(
            f"mask {tuple(mask.shape)} must have the logits' shape without the last dimension "
            f"{tuple(positions)}"
        )


def _select(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Rows [N, ...] of `x` [..., D] at the counted positions (all of them without a mask)."""
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    return x[mask.to(device=x.device, dtype=torch.bool)]


def _reduce(
    per_row: torch.Tensor,
    mask: Optional[torch.Tensor],
    positions: torch.Size,
    reduction: Reduction,
) -> torch.Tensor:
    """Reduce the per-position values of the counted rows ([N]).

    batchmean: TRL's. Sum over counted positions divided by their number when a mask is given
      (TRL with `labels`), else by the size of the first dimension (TRL without labels, like
      torch's `kl_div(reduction="batchmean")`: per sequence, not per token).
    mean_over_tokens: sum / number of counted positions, mask or not (0 when none; Forge's
      `mean_rows`). Equals batchmean whenever a mask is given.
    sum: the plain sum; divide by a global token count yourself for gradient-accumulation-correct
      losses (TRL's `num_items_in_batch` path is `sum / num_items_in_batch`).
    none: per position, shape `positions`, exactly 0 where the mask is False. (TRL's "none"
      returns per-vocabulary elements; summing those over V gives this.)
    """
    if reduction == "sum":
        return per_row.sum()
    if reduction == "mean_over_tokens":
        return per_row.sum() / max(per_row.shape[0], 1)
    if reduction == "batchmean":
        denom = per_row.shape[0] if mask is not None else (positions[0] if positions else 1)
        return per_row.sum() / max(denom, 1)
    # "none": scatter back into place; index_put keeps the graph, masked slots stay 0.
    if mask is None:
        return per_row.reshape(positions)
    out = per_row.new_zeros(positions)
    return out.index_put((mask.to(device=out.device, dtype=torch.bool),), per_row)


# --------------------------------------------------------------------------------------------
# Dense


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    beta: float,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: Reduction = "batchmean",
    scale_t2: bool = False,
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence between full student and teacher distributions.

    student_logits, teacher_logits: [..., V] (usually [B, T, V], already shifted so position t
      predicts token t+1). mask: [...] bool, True where the position counts; pass
      `label_mask(labels)` for TRL's `labels` argument.
    beta: 0 = forward KL(teacher‖student), 1 = reverse KL(student‖teacher), in between the
      JSD with mixture m = β·p_teacher + (1−β)·p_student (TRL's convention, see module doc).

    With TRL's arguments — `mask=label_mask(labels)` or None, `reduction="batchmean"` or "sum",
    `scale_t2=False` — the value equals `GKDTrainer.generalized_jsd_loss(student_logits,
    teacher_logits, labels, beta, temperature, reduction)`.
    """
    _check_args(beta, temperature, reduction)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} vs teacher "
            f"{tuple(teacher_logits.shape)}"
        )
    positions = student_logits.shape[:-1]
    _check_mask(mask, positions)
    s = _select(_as_float(student_logits), mask)
    t = _select(_as_float(teacher_logits), mask)
    log_ps = F.log_softmax(s / temperature, dim=-1)
    log_pt = F.log_softmax(t / temperature, dim=-1)
    per_row = _jsd_per_position(log_ps, log_pt, float(beta))
    if scale_t2:
        per_row = per_row * (temperature * temperature)
    return _reduce(per_row, mask, positions, reduction)


# --------------------------------------------------------------------------------------------
# Sparse: the teacher's top-k


def _view_rows(student_logits: torch.Tensor, view: TopKView, temperature: float,
               mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The view's ids and log-probabilities (re-tempered) at the counted positions: [N, K] each,
    on the student's device, the ids checked against the student's vocabulary."""
    vocab = student_logits.shape[-1]
    ids = view.token_ids.to(student_logits.device)
    if ids.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            f"view positions {tuple(ids.shape[:-1])} vs student logits positions "
            f"{tuple(student_logits.shape[:-1])}"
        )
    ids = _select(ids, mask)
    log_pt = _select(view.at_temperature(temperature).logprobs.to(student_logits.device), mask)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"view token ids must be in [0, {vocab}) (the student's vocabulary)")
    return ids, log_pt


def _student_on_view(
    student_logits: torch.Tensor,
    view: TopKView,
    temperature: float,
    mask: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher log-probabilities over the view's K ids at the counted positions, both
    renormalised: [N, K]. Positions are selected first, so nothing at a masked position (not even
    a NaN logit) reaches the value or the gradient.

    Why renormalise the student over the K ids (rather than compare its full-vocabulary
    log-probabilities at those ids):
    * The teacher's side is a distribution over the K ids only (its tail mass, where a backend gives
      it, is compared by `tail_bucket` instead: `_student_and_teacher_with_tail`). Comparing
      two distributions on the same support keeps every loss a true divergence: ≥ 0, zero
      exactly when the student matches the teacher on the K ids, the JSD mixture normalised,
      reverse KL / JSD well defined (the student's mass outside K has no teacher counterpart).
    * It is exact in the limit: with K = V both renormalisations are the identity and the losses
      equal the dense ones, so K is a pure accuracy/bandwidth knob.
    * Cost: the loss does not see (and gives zero gradient to) the student's logits outside the
      K ids, so it cannot push down student mass the teacher puts in its tail. The SFT/CE term
      and on-policy sampling keep that mass in check; the alternative (unrenormalised student)
      turns forward KL into a cross-entropy that pushes all mass onto K ids, over-sharpening
      the student relative to a teacher whose top-K mass is below 1.
    Padding slots (teacher logprob −inf) are removed from the student's support too.
    """
    ids, log_pt = _view_rows(student_logits, view, temperature, mask)
    gathered = _select(_as_float(student_logits), mask).gather(-1, ids) / temperature
    gathered = gathered.masked_fill(log_pt == float("-inf"), float("-inf"))
    return gathered.log_softmax(dim=-1), log_pt


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x ≤ 0 (−inf at x = 0)."""
    return torch.log(-torch.expm1(x))


def _student_and_teacher_with_tail(
    student_logits: torch.Tensor,
    view: TopKView,
    temperature: float,
    mask: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, K + 1] log-probabilities of both sides over the K ids plus one bucket for everything
    else, neither renormalised: the teacher's K ids hold their full-vocabulary mass and its bucket
    `view.tail`; the student's hold its full-vocabulary probabilities and its bucket the rest of
    its mass. Unlike the renormalised comparison this sees (and pushes down) student mass where
    the teacher has little, at the cost of one number per position.
    """
    if view.tail is None:
        raise ValueError("a tail bucket needs the teacher's mass outside the k ids, which this view does not hold")
    if temperature != view.temperature:
        raise ValueError(f"the teacher's tail mass is known at temperature {view.temperature} only; "
                         f"a tail bucket cannot be compared at {temperature}")
    ids, log_pt = _view_rows(student_logits, view, temperature, mask)
    tail_t = _select(view.tail.to(student_logits.device)[..., None], mask)
    absent = log_pt == float("-inf")
    log_q = _select(_as_float(student_logits), mask).div(temperature).log_softmax(dim=-1)
    ids = torch.where(absent, ids[..., :1], ids)  # padding slots repeat a real id: scattering it twice is harmless
    tail_s = log_q.scatter(-1, ids, float("-inf")).logsumexp(-1, keepdim=True)
    log_qk = log_q.gather(-1, ids).masked_fill(absent, float("-inf"))
    teacher = torch.cat([log_pt + _log1mexp(tail_t), tail_t], dim=-1)
    return torch.cat([log_qk, tail_s], dim=-1), teacher


def topk_log_probs(student_logits: torch.Tensor, view: TopKView, temperature: float = 1.0,
                   mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probabilities [N, K] over the view's ids at the counted positions,
    both renormalised over them at `temperature` (for losses other than the JSD family)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_mask(mask, student_logits.shape[:-1])
    return _student_on_view(student_logits, view, temperature, mask)


def topk_generalized_jsd(
    student_logits: torch.Tensor,
    view: TopKView,
    *,
    beta: float,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: Reduction = "batchmean",
    scale_t2: bool = False,
    tail_bucket: bool = False,
) -> torch.Tensor:
    """`generalized_jsd` against a teacher top-k view: both sides restricted to the view's K ids
    and renormalised over them (see `_student_on_view` for why). student_logits: [..., V];
    view: [..., K] at any temperature (re-tempered to `temperature` exactly). With K = V it
    equals `generalized_jsd(student_logits, teacher_logits, ...)` with the same arguments.

    tail_bucket: compare K + 1 buckets instead, the K ids with their full-vocabulary mass and one
    for the rest (`_student_and_teacher_with_tail`); the view must hold `tail` at `temperature`."""
    _check_args(beta, temperature, reduction)
    positions = student_logits.shape[:-1]
    _check_mask(mask, positions)
    pair = _student_and_teacher_with_tail if tail_bucket else _student_on_view
    log_ps, log_pt = pair(student_logits, view, temperature, mask)
    per_row = _jsd_per_position(log_ps, log_pt, float(beta))
    if scale_t2:
        per_row = per_row * (temperature * temperature)
    return _reduce(per_row, mask, positions, reduction)


def topk_forward_kl(
    student_logits: torch.Tensor,
    view: TopKView,
    *,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: Reduction = "batchmean",
    scale_t2: bool = False,
) -> torch.Tensor:
    """Forward KL(teacher‖student) over the teacher's top-k ids: `topk_generalized_jsd` with
    β = 0, the usual sparse-teacher distillation loss (mode covering on what the teacher shows)."""
    return topk_generalized_jsd(
        student_logits, view, beta=0.0, temperature=temperature, mask=mask,
        reduction=reduction, scale_t2=scale_t2,
    )


__all__ = [
    "IGNORE_INDEX", "Reduction", "TopKView", "generalized_jsd", "label_mask",
    "topk_forward_kl", "topk_generalized_jsd", "topk_log_probs",
]
