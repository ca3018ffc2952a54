"""forge.losses.divergence against references: TRL's `GKDTrainer.generalized_jsd_loss` (called
directly), KLs written out by hand, and a top-k example computed with plain Python floats."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from forge.losses.divergence import (
    TopKView, generalized_jsd, label_mask, topk_forward_kl, topk_generalized_jsd,
)

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]
TEMPERATURES = [1.0, 2.0]
# (seed, shape [B, T, V])
CASES = [(0, (2, 3, 7)), (1, (1, 5, 11)), (2, (3, 4, 32)), (3, (4, 1, 5))]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tensors here are tiny; on a busy 2-core box intra-op threads make each log_softmax ~8 ms
    instead of ~3 µs. Restored afterwards so other test modules are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trl_jsd():
    """TRL's reference (a pinned dependency: a missing TRL fails here rather than skipping)."""
    from trl.experimental.gkd import GKDTrainer

    return GKDTrainer.generalized_jsd_loss


def logits(shape: tuple[int, ...], seed: int, scale: float = 3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def pair(shape: tuple[int, ...], seed: int, dtype=torch.float32):
    return logits(shape, 1000 + seed, dtype=dtype), logits(shape, 2000 + seed, dtype=dtype)


def labels_with_ignores(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Token labels with -100 at a random ~40% of positions (and a whole row when B > 1)."""
    b, t, v = shape
    g = torch.Generator().manual_seed(3000 + seed)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.4] = -100
    if b > 1:
        labels[-1] = -100  # a fully truncated completion: TRL clamps the denominator
    return labels


def by_hand_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) per position with explicit sums over plain probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def tempered(x: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.log_softmax(x.double() / temperature, dim=-1)


# --------------------------------------------------------------------------------------------
# Dense: parity with TRL


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("seed,shape", CASES)
@pytest.mark.parametrize("with_labels", [False, True])
def test_matches_trl(trl_jsd, seed, shape, beta, temperature, with_labels):
    s, t = pair(shape, seed)
    labels = labels_with_ignores(shape, seed) if with_labels else None
    mask = label_mask(labels) if with_labels else None
    for reduction in ("batchmean", "sum"):
        expected = trl_jsd(s, t, labels=labels, beta=beta, temperature=temperature,
                           reduction=reduction)
        got = generalized_jsd(s, t, beta=beta, temperature=temperature, mask=mask,
                              reduction=reduction)
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("beta", BETAS)
def test_matches_trl_in_float64_and_per_position(trl_jsd, beta):
    shape = (3, 6, 13)
    s, t = pair(shape, 7, dtype=torch.float64)
    labels = labels_with_ignores(shape, 7)
    expected = trl_jsd(s, t, labels=labels, beta=beta, temperature=2.0, reduction="batchmean")
    got = generalized_jsd(s, t, beta=beta, temperature=2.0, mask=label_mask(labels))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # TRL's "none" is per vocabulary entry of the kept positions; ours is per position, in place.
    trl_none = trl_jsd(s, t, labels=labels, beta=beta, temperature=2.0, reduction="none")
    ours = generalized_jsd(s, t, beta=beta, temperature=2.0, mask=label_mask(labels),
                           reduction="none")
    assert ours.shape == labels.shape
    torch.testing.assert_close(ours[labels != -100], trl_none.sum(-1), rtol=1e-12, atol=1e-12)
    assert torch.all(ours[labels == -100] == 0)


def test_trl_gradient_accumulation_path(trl_jsd):
    """TRL's num_items_in_batch path is our "sum" divided by the global count."""
    shape = (2, 5, 9)
    s, t = pair(shape, 4)
    labels = labels_with_ignores(shape, 4)
    expected = trl_jsd(s, t, labels=labels, beta=0.5, num_items_in_batch=17)
    got = generalized_jsd(s, t, beta=0.5, mask=label_mask(labels), reduction="sum") / 17
    torch.testing.assert_close(got, expected)


def test_reductions_relate():
    shape = (3, 4, 10)
    s, t = pair(shape, 5)
    mask = label_mask(labels_with_ignores(shape, 5))
    per_pos = generalized_jsd(s, t, beta=0.5, mask=mask, reduction="none")
    total = generalized_jsd(s, t, beta=0.5, mask=mask, reduction="sum")
    torch.testing.assert_close(per_pos.sum(), total)
    n = int(mask.sum())
    torch.testing.assert_close(
        generalized_jsd(s, t, beta=0.5, mask=mask, reduction="mean_over_tokens"), total / n)
    torch.testing.assert_close(generalized_jsd(s, t, beta=0.5, mask=mask), total / n)
    # Without a mask, batchmean is per sequence (TRL, torch), mean_over_tokens per token.
    total_all = generalized_jsd(s, t, beta=0.5, reduction="sum")
    torch.testing.assert_close(generalized_jsd(s, t, beta=0.5), total_all / 3)
    torch.testing.assert_close(
        generalized_jsd(s, t, beta=0.5, reduction="mean_over_tokens"), total_all / 12)


# --------------------------------------------------------------------------------------------
# Dense: hand references and sanity


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_beta0_is_forward_kl(temperature):
    shape = (2, 4, 9)
    s, t = pair(shape, 11)
    log_ps, log_pt = tempered(s, temperature), tempered(t, temperature)
    with_kl_div = F.kl_div(log_ps, log_pt, reduction="none", log_target=True).sum(-1)
    explicit = by_hand_kl(log_pt, log_ps)
    torch.testing.assert_close(with_kl_div, explicit)
    got = generalized_jsd(s.double(), t.double(), beta=0.0, temperature=temperature,
                          reduction="none")
    torch.testing.assert_close(got, explicit)
    got_mean = generalized_jsd(s, t, beta=0.0, temperature=temperature,
                               reduction="mean_over_tokens")
    torch.testing.assert_close(got_mean, explicit.mean().float())


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_beta1_is_reverse_kl(temperature):
    shape = (2, 4, 9)
    s, t = pair(shape, 12)
    log_ps, log_pt = tempered(s, temperature), tempered(t, temperature)
    explicit = by_hand_kl(log_ps, log_pt)
    torch.testing.assert_close(
        F.kl_div(log_pt, log_ps, reduction="none", log_target=True).sum(-1), explicit)
    got = generalized_jsd(s.double(), t.double(), beta=1.0, temperature=temperature,
                          reduction="none")
    torch.testing.assert_close(got, explicit)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_interior_is_mixture_jsd_by_hand(beta):
    s, t = pair((2, 3, 6), 13, dtype=torch.float64)
    ps, pt = F.softmax(s, -1), F.softmax(t, -1)
    m = beta * pt + (1 - beta) * ps  # beta weights the teacher
    expected = beta * (pt * (pt / m).log()).sum(-1) + (1 - beta) * (ps * (ps / m).log()).sum(-1)
    got = generalized_jsd(s, t, beta=beta, reduction="none")
    torch.testing.assert_close(got, expected)


def test_endpoints_are_limits_of_normalised_interior():
    s, t = pair((2, 3, 8), 14, dtype=torch.float64)
    eps = 1e-7
    fwd = generalized_jsd(s, t, beta=0.0, reduction="none")
    rev = generalized_jsd(s, t, beta=1.0, reduction="none")
    near0 = generalized_jsd(s, t, beta=eps, reduction="none") / eps
    near1 = generalized_jsd(s, t, beta=1 - eps, reduction="none") / eps
    torch.testing.assert_close(near0, fwd, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(near1, rev, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_zero_when_student_equals_teacher(beta, temperature):
    s = logits((2, 5, 17), 15)
    got = generalized_jsd(s, s.clone(), beta=beta, temperature=temperature, reduction="none")
    torch.testing.assert_close(got, torch.zeros_like(got), rtol=0, atol=1e-6)


def test_jsd_half_is_symmetric_and_bounded_by_ln2():
    # Near-one-hot, disagreeing distributions push the JSD towards its ln 2 ceiling.
    s, t = logits((4, 8, 12), 16, scale=50.0), logits((4, 8, 12), 17, scale=50.0)
    ab = generalized_jsd(s, t, beta=0.5, reduction="none")
    ba = generalized_jsd(t, s, beta=0.5, reduction="none")
    torch.testing.assert_close(ab, ba)
    assert torch.all(ab >= 0)
    assert torch.all(ab <= math.log(2) + 1e-6)
    assert ab.max() > 0.99 * math.log(2)
    assert torch.all(generalized_jsd(s, t, beta=0.3, reduction="none") >= -1e-7)


def test_scale_t2():
    s, t = pair((2, 3, 7), 18)
    plain = generalized_jsd(s, t, beta=0.5, temperature=2.0)
    torch.testing.assert_close(
        generalized_jsd(s, t, beta=0.5, temperature=2.0, scale_t2=True), plain * 4)


@pytest.mark.parametrize("beta", BETAS)
def test_no_nan_when_probabilities_underflow(beta):
    s, t = pair((2, 3, 9), 19)
    s, t = s * 1000, t * 1000  # exp underflows to exactly 0 for most entries
    t[..., 0] = float("-inf")  # a vocabulary slot the teacher forbids ...
    s[..., 0] = float("-inf")  # ... and the student too
    s.requires_grad_(True)
    loss = generalized_jsd(s, t, beta=beta)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all()


def test_low_precision_inputs_are_upcast():
    s, t = pair((2, 3, 7), 20, dtype=torch.bfloat16)
    got = generalized_jsd(s, t, beta=0.5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, generalized_jsd(s.float(), t.float(), beta=0.5))


def test_masked_positions_contribute_nothing_dense():
    shape = (2, 5, 8)
    s, t = pair(shape, 21)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3:] = False
    s2 = s.clone()
    s2[~mask] = float("nan")  # even NaN at masked positions must not leak
    s2.requires_grad_(True)
    loss = generalized_jsd(s2, t, beta=0.5, mask=mask)
    torch.testing.assert_close(loss, generalized_jsd(s, t, beta=0.5, mask=mask))
    loss.backward()
    assert torch.all(s2.grad[~mask] == 0)
    assert torch.isfinite(s2.grad[mask]).all() and s2.grad[mask].abs().sum() > 0
    # No position counted: zero, still attached to the graph.
    empty = generalized_jsd(s.requires_grad_(True), t, beta=0.5,
                            mask=torch.zeros(2, 5, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def test_rejects_bad_arguments():
    s, t = pair((2, 3, 7), 22)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, t, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        generalized_jsd(s, t, beta=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        generalized_jsd(s, t, beta=0.5, reduction="mean")
    with pytest.raises(ValueError, match="teacher"):
        generalized_jsd(s, t[..., :6], beta=0.5)
    with pytest.raises(ValueError, match="mask"):
        generalized_jsd(s, t, beta=0.5, mask=torch.ones(2, 4, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# Top-k view


def test_view_logprobs_are_normalised_over_k():
    t = logits((2, 3, 20), 30)
    view = TopKView.from_logits(t, 4, temperature=2.0)
    assert view.token_ids.shape == view.logprobs.shape == (2, 3, 4)
    assert view.token_ids.dtype == torch.long and view.temperature == 2.0
    lse = view.logprobs.logsumexp(-1)
    torch.testing.assert_close(lse, torch.zeros_like(lse))
    # The K most likely ids, most likely first.
    torch.testing.assert_close(view.token_ids, (t / 2.0).topk(4, dim=-1).indices)
    # A backend's raw (full-vocabulary) log-probabilities renormalise to the same view.
    raw = F.log_softmax(t / 2.0, -1).gather(-1, view.token_ids)
    again = TopKView(view.token_ids, raw, temperature=2.0).renormalized()
    torch.testing.assert_close(again.logprobs, view.logprobs)
    torch.testing.assert_close(again.renormalized().logprobs, again.logprobs)  # idempotent


def test_view_retempers_exactly():
    t = logits((2, 3, 20), 31)
    at1 = TopKView.from_logits(t, 5, temperature=1.0)
    at3 = TopKView.from_logits(t, 5, temperature=3.0)
    torch.testing.assert_close(at1.at_temperature(3.0).logprobs, at3.logprobs)
    torch.testing.assert_close(at3.at_temperature(1.0).logprobs, at1.logprobs)


def test_view_rejects_mismatched_fields():
    with pytest.raises(ValueError, match="token_ids"):
        TopKView(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="int64"):
        TopKView(torch.zeros(2, 3), torch.zeros(2, 3))


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("view_temperature", [1.0, None])
def test_topk_with_full_vocabulary_equals_dense(beta, temperature, view_temperature):
    shape = (3, 4, 12)
    s, t = pair(shape, 32)
    mask = label_mask(labels_with_ignores(shape, 32))
    # A view made at the loss's temperature, or at 1 and re-tempered by the loss.
    view = TopKView.from_logits(t, shape[-1], temperature=view_temperature or temperature)
    for reduction in ("batchmean", "sum", "none", "mean_over_tokens"):
        for m in (None, mask):
            dense = generalized_jsd(s, t, beta=beta, temperature=temperature, mask=m,
                                    reduction=reduction)
            sparse = topk_generalized_jsd(s, view, beta=beta, temperature=temperature, mask=m,
                                          reduction=reduction)
            torch.testing.assert_close(sparse, dense)
    if beta == 0.0:
        torch.testing.assert_close(
            topk_forward_kl(s, view, temperature=temperature, mask=mask),
            generalized_jsd(s, t, beta=0.0, temperature=temperature, mask=mask))


def _softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_topk_small_example_by_hand():
    """V = 5, K = 2, one position, T = 2, worked out with Python floats."""
    T = 2.0
    teacher = [2.0, -1.0, 3.0, 0.5, 0.0]
    student = [0.3, 1.2, -0.4, 2.0, 0.1]
    # Teacher's two most likely tokens: ids 2 and 0. Both sides renormalised over {2, 0}.
    ids = [2, 0]
    pt = _softmax([teacher[i] / T for i in ids])
    ps = _softmax([student[i] / T for i in ids])
    fwd = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    rev = sum(q * math.log(q / p) for p, q in zip(pt, ps))
    beta = 0.3
    m = [beta * p + (1 - beta) * q for p, q in zip(pt, ps)]
    jsd = (beta * sum(p * math.log(p / mi) for p, mi in zip(pt, m))
           + (1 - beta) * sum(q * math.log(q / mi) for q, mi in zip(ps, m)))

    s = torch.tensor([[student]], dtype=torch.float64)
    view = TopKView.from_logits(torch.tensor([[teacher]], dtype=torch.float64), 2, temperature=T)
    assert view.token_ids.tolist() == [[ids]]
    torch.testing.assert_close(view.logprobs, torch.tensor([[[math.log(p) for p in pt]]],
                                                           dtype=torch.float64))
    expect = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(topk_forward_kl(s, view, temperature=T), expect(fwd))
    torch.testing.assert_close(topk_generalized_jsd(s, view, beta=0.0, temperature=T),
                               expect(fwd))
    torch.testing.assert_close(topk_generalized_jsd(s, view, beta=1.0, temperature=T),
                               expect(rev))
    torch.testing.assert_close(topk_generalized_jsd(s, view, beta=beta, temperature=T),
                               expect(jsd))
    # Renormalising the student matters: the unrenormalised cross-entropy form differs.
    full_ps = _softmax([x / T for x in student])
    unrenormalised = sum(p * math.log(p / full_ps[i]) for p, i in zip(pt, ids))
    assert abs(unrenormalised - fwd) > 0.1


def test_topk_padding_slot_is_outside_the_support():
    s, t = pair((2, 3, 10), 33)
    view3 = TopKView.from_logits(t, 3)
    padded = TopKView(
        torch.cat([view3.token_ids, torch.zeros(2, 3, 1, dtype=torch.long)], -1),
        torch.cat([view3.logprobs, torch.full((2, 3, 1), float("-inf"))], -1),
    )
    s = s.requires_grad_(True)
    for beta in BETAS:
        got = topk_generalized_jsd(s, padded, beta=beta)
        torch.testing.assert_close(got, topk_generalized_jsd(s, view3, beta=beta))
        (grad,) = torch.autograd.grad(got, s)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("beta", BETAS)
def test_topk_masking_and_gradients(beta):
    shape = (2, 5, 16)
    s, t = pair(shape, 34)
    view = TopKView.from_logits(t, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 0] = mask[1, 2:] = False
    s2 = s.clone()
    s2[~mask] = float("nan")
    s2.requires_grad_(True)
    loss = topk_generalized_jsd(s2, view, beta=beta, temperature=2.0, mask=mask)
    torch.testing.assert_close(
        loss, topk_generalized_jsd(s, view, beta=beta, temperature=2.0, mask=mask))
    per_pos = topk_generalized_jsd(s, view, beta=beta, temperature=2.0, mask=mask,
                                   reduction="none")
    assert torch.all(per_pos[~mask] == 0)
    loss.backward()
    grad = s2.grad
    assert torch.isfinite(grad).all()
    assert torch.all(grad[~mask] == 0)
    # Gradient reaches exactly the teacher's K ids at counted positions, nowhere else.
    on_k = torch.zeros(shape, dtype=torch.bool).scatter(-1, view.token_ids, True)
    assert torch.all(grad[~on_k] == 0)
    assert grad[on_k & mask.unsqueeze(-1)].abs().sum() > 0


def test_topk_zero_when_student_matches_and_rejects_bad_ids():
    t = logits((2, 3, 10), 35)
    view = TopKView.from_logits(t, 3)
    for beta in BETAS:
        got = topk_generalized_jsd(t.clone(), view, beta=beta, temperature=1.0)
        assert abs(got.item()) < 1e-6
    bad = TopKView(view.token_ids + 10, view.logprobs)
    with pytest.raises(ValueError, match="vocabulary"):
        topk_forward_kl(t, bad)
    with pytest.raises(ValueError, match="positions"):
        topk_forward_kl(t[:, :2], view)
