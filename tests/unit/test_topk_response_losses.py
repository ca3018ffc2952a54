"""Response losses over a teacher's top-k view (`loss.top_k`): against hand-written formulas on the K
ids, equal to the dense losses when K is the whole vocabulary, the stored rows ([N, K] in
`ForwardView.topk`) giving the same value as the view of the logits, and refused where undefined."""

from __future__ import annotations

import pytest
import torch

from forge.losses import ForwardView, LossBatch, ResponseCE, ResponseKL, ResponseMSE, ResponseReverseKL
from forge.losses.base import select_positions
from forge.losses.divergence import TopKView
from forge.models.info import ModelInfo

TOPK_LOSSES = [ResponseKL, ResponseReverseKL, ResponseCE]
T = 2.0


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, L, V = 2, 5, 11
    s = torch.randn(B, L, V, generator=g, requires_grad=True)
    t = torch.randn(B, L, V, generator=g) * 3
    target = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    return s, t, LossBatch(token_mask=torch.ones(B, L, dtype=torch.bool), target_mask=target)


def _by_hand(cls: type, s_row: torch.Tensor, t_row: torch.Tensor, k: int) -> torch.Tensor:
    """The loss of one position over the teacher's k most likely ids, both sides renormalised."""
    ids = t_row.topk(k).indices
    p = torch.softmax(t_row[ids].double() / T, -1)
    q = torch.softmax(s_row[ids].double() / T, -1)
    value = {ResponseKL: (p * (p / q).log()).sum(), ResponseReverseKL: (q * (q / p).log()).sum(),
             ResponseCE: -(p * q.log()).sum()}[cls]
    return value * T * T


@pytest.mark.parametrize("cls", TOPK_LOSSES)
def test_top_k_losses_match_the_formula_on_the_k_ids(cls) -> None:
    s, t, batch = _case()
    got = cls(temperature=T, top_k=4)(ForwardView(logits=s), ForwardView(logits=t), batch).total
    rows = batch.target_mask.nonzero().tolist()
    want = torch.stack([_by_hand(cls, s[b, i].detach(), t[b, i], 4) for b, i in rows]).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert s.grad[~batch.target_mask].abs().sum() == 0 and s.grad[batch.target_mask].abs().sum() > 0


@pytest.mark.parametrize("cls", TOPK_LOSSES)
def test_top_k_over_the_whole_vocabulary_is_the_dense_loss(cls) -> None:
    s, t, batch = _case(1)
    dense = cls(temperature=T)(ForwardView(logits=s), ForwardView(logits=t), batch).total
    full = cls(temperature=T, top_k=s.shape[-1])(ForwardView(logits=s), ForwardView(logits=t), batch).total
    assert full.item() == pytest.approx(dense.item(), rel=1e-5)


@pytest.mark.parametrize("cls", TOPK_LOSSES)
def test_stored_rows_give_the_value_of_the_live_view(cls) -> None:
    """The store holds rows at temperature 1; the loss re-tempers them to its own temperature."""
    s, t, batch = _case(2)
    loss = cls(temperature=T, top_k=5)
    live = loss(ForwardView(logits=s), ForwardView(logits=t), batch).total
    view = TopKView.from_logits(select_positions(t, batch.target_mask), 5, temperature=1.0)
    stored = loss(ForwardView(logits=s), ForwardView(topk=view), batch).total
    assert stored.item() == pytest.approx(live.item(), rel=1e-5)
    short = TopKView(view.token_ids[:-1], view.logprobs[:-1])
    with pytest.raises(ValueError, match="5 student rows vs a teacher view of 4"):
        loss(ForwardView(logits=s), ForwardView(topk=short), batch)


def test_losses_on_raw_logits_refuse_top_k_and_k_is_bounded_by_the_vocabulary() -> None:
    info = ModelInfo(6, 64, 4, 11)
    (problem,) = ResponseMSE(top_k=4).validate(info, info)
    assert problem.key == "loss.top_k" and "raw logits" in problem.message and "response_kl" in problem.fix
    (problem,) = ResponseKL(top_k=12).validate(info, info)
    assert problem.key == "loss.top_k" and "exceeds the output size (11)" in problem.message
    assert ResponseCE(top_k=11).validate(info, info) == []
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        ResponseKL(top_k=0)
