"""The teacher's tail mass in a top-k view (`TopKView.tail`) and the tail-bucket divergence: k ids at
their full-vocabulary mass plus one bucket for the rest, against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from forge.losses.divergence import TopKView, topk_generalized_jsd


def _logits(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def test_from_logits_holds_the_mass_outside_the_k_ids():
    logits = _logits(0, 3, 4, 10)
    view = TopKView.from_logits(logits, 3)
    p = logits.softmax(-1)
    top = p.topk(3, dim=-1).values.sum(-1)
    assert torch.allclose(view.tail.exp(), 1 - top, atol=1e-12)
    assert view.renormalized().tail is view.tail and view.at_temperature(0.5).tail is None
    assert torch.equal(view.rows(torch.tensor([[True, False, True, False]] * 3)).tail,
                       view.tail[:, [0, 2]].reshape(-1))
    with pytest.raises(ValueError, match="tail"):
        TopKView(view.token_ids, view.logprobs, 1.0, view.tail[:, :2])


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_tail_bucket_divergence_by_hand(beta):
    student, teacher = _logits(1, 2, 3, 12), _logits(2, 2, 3, 12)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    view = TopKView.from_logits(teacher, 4)
    got = topk_generalized_jsd(student, view, beta=beta, mask=mask, tail_bucket=True, reduction="none")
    for b, t in mask.nonzero().tolist():
        ids = teacher[b, t].topk(4).indices
        p_full, q_full = teacher[b, t].softmax(-1), student[b, t].softmax(-1)
        p = torch.cat([p_full[ids], (1 - p_full[ids].sum()).reshape(1)])
        q = torch.cat([q_full[ids], (1 - q_full[ids].sum()).reshape(1)])
        kl = lambda a, c: (a * (a / c).log()).sum()  # noqa: E731
        m = beta * p + (1 - beta) * q
        want = kl(p, q) if beta == 0 else kl(q, p) if beta == 1 else beta * kl(p, m) + (1 - beta) * kl(q, m)
        assert got[b, t].item() == pytest.approx(want.item(), rel=1e-9, abs=1e-12)
    assert bool((got[~mask] == 0).all())


def test_the_bucket_pushes_down_student_mass_the_renormalised_loss_cannot_see():
    """A student equal to the teacher on the k ids up to a constant (so the renormalised loss is 0)
    but with more mass outside them: only the tail bucket sees it, and its gradient moves the tail."""
    teacher = _logits(3, 1, 1, 8)
    view = TopKView.from_logits(teacher, 3)
    student = teacher.clone()
    outside = torch.ones(8, dtype=torch.bool)
    outside[view.token_ids[0, 0]] = False
    student[0, 0, outside] += 2.0
    student.requires_grad_(True)
    plain = topk_generalized_jsd(student, view, beta=0.0)
    bucket = topk_generalized_jsd(student, view, beta=0.0, tail_bucket=True)
    assert plain.item() == pytest.approx(0.0, abs=1e-12) and bucket.item() > 0.1
    bucket.backward()
    assert bool((student.grad[0, 0, outside] > 0).all())  # descent lowers the logits outside the k ids


def test_a_tail_bucket_needs_the_tail_at_the_loss_temperature():
    student, teacher = _logits(4, 1, 2, 6), _logits(5, 1, 2, 6)
    view = TopKView.from_logits(teacher, 2)
    with pytest.raises(ValueError, match="does not hold"):
        topk_generalized_jsd(student, TopKView(view.token_ids, view.logprobs), beta=0.0, tail_bucket=True)
    with pytest.raises(ValueError, match="known at temperature 1.0 only"):
        topk_generalized_jsd(student, view, beta=0.0, temperature=0.9, tail_bucket=True)
