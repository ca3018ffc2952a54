"""Each loss against its formula on small hand-made tensors: values, T² scaling, masking, zero at
equality, and where gradients go (student and projections yes, teacher never)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from forge.config.errors import ConfigError
from forge.losses import (
    AttentionKL, CombinedLoss, FeatureCosine, FeatureMSE, ForwardView, LossBatch, NoDistillation,
    ResponseCE, ResponseCosine, ResponseKL, ResponseMSE, ResponseReverseKL, StagedLoss, build_loss,
    make_projection,
)
from forge.models.info import ModelInfo

torch.manual_seed(0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)).requires_grad_(grad)


def logits_view(x: torch.Tensor) -> ForwardView:
    return ForwardView(logits=x)


def seq_batch(b: int = 4, t: int = 3) -> LossBatch:
    return LossBatch(token_mask=torch.ones(b, t, dtype=torch.bool))


# Reference formulas, written with explicit sums over plain probabilities.

def ref_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(p || q)."""
    return (p * (p.log() - q.log())).sum(-1)


def softmax_t(x: torch.Tensor, T: float) -> torch.Tensor:
    return torch.exp(x / T) / torch.exp(x / T).sum(-1, keepdim=True)


# ---------------------------------------------------------------- response losses

def test_two_class_example_worked_by_hand() -> None:
    # Student logits (0, 0): p_s = (1/2, 1/2). Teacher logits (ln 3, 0): p_t = (3/4, 1/4) at T=1.
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    b = seq_batch(1)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    rkl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    ce = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))  # = ln 2
    run = lambda loss: loss(logits_view(s), logits_view(t), b).total.item()  # noqa: E731
    assert run(ResponseKL(temperature=1.0)) == pytest.approx(kl, abs=1e-6)
    assert run(ResponseReverseKL(temperature=1.0)) == pytest.approx(rkl, abs=1e-6)
    assert run(ResponseCE(temperature=1.0)) == pytest.approx(math.log(2), abs=1e-6)
    assert ce == pytest.approx(math.log(2))
    assert run(ResponseMSE()) == pytest.approx((math.log(3.0) ** 2) / 2, abs=1e-6)
    # cos((0,0),(ln3,0)) is undefined (zero vector): use (1,1) vs (1,0) instead: cos = 1/sqrt 2.
    cos = ResponseCosine()(logits_view(torch.tensor([[1.0, 1.0]])),
                           logits_view(torch.tensor([[1.0, 0.0]])), b).total.item()
    assert cos == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    # T = 2 with teacher logits (2 ln 3, 0): the softened p_t is again (3/4, 1/4), p_s stays uniform,
    # so the value is exactly T² = 4 times the T=1 value.
    t2 = torch.tensor([[2 * math.log(3.0), 0.0]])
    v2 = ResponseKL(temperature=2.0)(logits_view(s), logits_view(t2), b).total.item()
    assert v2 == pytest.approx(4 * kl, abs=1e-6)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_sequence_level_kl_family_matches_formula(T: float) -> None:
    s, t = randn(5, 3, seed=1), randn(5, 3, seed=2) * 3
    ps, pt = softmax_t(s, T), softmax_t(t, T)
    b = seq_batch(5)
    got = {cls: cls(temperature=T)(logits_view(s), logits_view(t), b).total.item()
           for cls in (ResponseKL, ResponseReverseKL, ResponseCE)}
    assert got[ResponseKL] == pytest.approx((ref_kl(pt, ps).mean() * T * T).item(), rel=1e-5)
    assert got[ResponseReverseKL] == pytest.approx((ref_kl(ps, pt).mean() * T * T).item(), rel=1e-5)
    ce = -(pt * ps.log()).sum(-1).mean() * T * T
    assert got[ResponseCE] == pytest.approx(ce.item(), rel=1e-5)
    # CE = KL + H(p_t), both scaled by T².
    entropy = -(pt * pt.log()).sum(-1).mean() * T * T
    assert got[ResponseCE] == pytest.approx(got[ResponseKL] + entropy.item(), rel=1e-5)


def test_forward_kl_is_finite_where_the_teacher_has_no_mass() -> None:
    """A teacher logit of -inf (a class masked out) makes p_t exactly 0 there. F.kl_div's
    exp(t)(t - x) gives 0 * (-inf) = NaN in the value and the gradient; the loss must not."""
    s = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[math.log(3.0), 0.0, float("-inf")]])
    loss = ResponseKL(temperature=1.0)(logits_view(s), logits_view(t), seq_batch(1)).total
    # p_t = (3/4, 1/4, 0), p_s = (1/3, 1/3, 1/3): KL = 3/4 ln(9/4) + 1/4 ln(3/4)
    assert loss.item() == pytest.approx(0.75 * math.log(9 / 4) + 0.25 * math.log(3 / 4), abs=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    # d KL / d s = p_s - p_t
    torch.testing.assert_close(s.grad, torch.tensor([[1 / 3 - 0.75, 1 / 3 - 0.25, 1 / 3]]), atol=1e-6, rtol=0)
    naive = F.kl_div(F.log_softmax(s.detach(), -1), F.log_softmax(t, -1), reduction="none", log_target=True)
    assert torch.isnan(naive).any()  # what the helper avoids


def test_mse_and_cosine_match_formula_and_ignore_temperature() -> None:
    s, t = randn(4, 6, seed=3), randn(4, 6, seed=4)
    b = seq_batch(4)
    mse = ((s - t) ** 2).mean()
    cos = 1 - ((s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1)))
    for T in (1.0, 3.0):
        assert ResponseMSE(T)(logits_view(s), logits_view(t), b).total.item() == pytest.approx(
            mse.item(), rel=1e-6)
        assert ResponseCosine(T)(logits_view(s), logits_view(t), b).total.item() == pytest.approx(
            cos.mean().item(), rel=1e-5)


RESPONSE = [ResponseKL, ResponseReverseKL, ResponseCE, ResponseMSE, ResponseCosine]


def _token_case(seed: int = 0):
    B, T, V = 3, 5, 7
    s, t = randn(B, T, V, seed=seed), randn(B, T, V, seed=seed + 1) * 2
    target = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    token = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    return s, t, LossBatch(token_mask=token, target_mask=target)


@pytest.mark.parametrize("cls", RESPONSE)
def test_token_level_is_mean_over_target_positions(cls) -> None:
    s, t, batch = _token_case()
    got = cls(temperature=2.0)(logits_view(s), logits_view(t), batch).total
    # Reference: the same loss on a [N, V] "sequence-level" batch of exactly the selected positions,
    # built position by position.
    rows = [(bi, ti) for bi in range(3) for ti in range(5) if batch.target_mask[bi, ti]]
    s_rows = torch.stack([s[bi, ti] for bi, ti in rows])
    t_rows = torch.stack([t[bi, ti] for bi, ti in rows])
    per_row = [cls(temperature=2.0)(logits_view(s_rows[i:i + 1]), logits_view(t_rows[i:i + 1]),
                                    seq_batch(1)).total for i in range(len(rows))]
    assert got.item() == pytest.approx(torch.stack(per_row).mean().item(), rel=1e-5)


@pytest.mark.parametrize("cls", RESPONSE)
def test_token_level_masked_positions_contribute_nothing(cls) -> None:
    s, t, batch = _token_case()
    loss = cls(temperature=2.0)
    before = loss(logits_view(s), logits_view(t), batch).total
    s2, t2 = s.clone(), t.clone()
    off = ~batch.target_mask
    s2[off] = 1e4 * randn(int(off.sum()), 7, seed=9)
    t2[off] = float("nan")  # even NaN where nothing is selected must not leak in
    s2.requires_grad_(True)
    after = loss(logits_view(s2), logits_view(t2), batch).total
    assert after.item() == before.item()
    after.backward()
    assert torch.all(s2.grad[off] == 0)
    assert s2.grad[batch.target_mask].abs().sum() > 0


@pytest.mark.parametrize("cls", RESPONSE)
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 7)])
def test_response_zero_when_equal_and_grads(cls, shape) -> None:
    x = randn(*shape, seed=5)
    batch = LossBatch(token_mask=torch.ones(shape[0], 5, dtype=torch.bool),
                      target_mask=torch.ones(shape[:2], dtype=torch.bool) if len(shape) == 3 else None)
    loss = cls(temperature=2.0)
    value = loss(logits_view(x), logits_view(x.clone()), batch).total
    if cls is ResponseCE:  # CE at equality is the teacher's entropy (times T²), not zero
        p = softmax_t(x, 2.0)
        assert value.item() == pytest.approx((-(p * p.log()).sum(-1).mean() * 4).item(), rel=1e-5)
    else:
        assert abs(value.item()) < 1e-6
    s = randn(*shape, seed=6, grad=True)
    t = randn(*shape, seed=7, grad=True)
    out = loss(logits_view(s), logits_view(t), batch)
    out.total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    assert out.components["response"].requires_grad is False
    assert out.components["response"].item() == pytest.approx(out.total.item())


def test_token_level_without_target_mask_uses_token_mask() -> None:
    s, t, batch = _token_case()
    loss = ResponseKL()
    a = loss(logits_view(s), logits_view(t), LossBatch(token_mask=batch.token_mask)).total
    b = loss(logits_view(s), logits_view(t), LossBatch(token_mask=batch.token_mask,
                                                        target_mask=batch.token_mask)).total
    assert a.item() == b.item()


def test_empty_target_mask_gives_zero_not_nan() -> None:
    s, t, batch = _token_case()
    none = LossBatch(token_mask=batch.token_mask, target_mask=torch.zeros(3, 5, dtype=torch.bool))
    assert ResponseKL()(logits_view(s), logits_view(t), none).total.item() == 0.0


def test_response_validate_output_sizes_and_temperature() -> None:
    assert ResponseKL().validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 384, 12, 2)) == []
    (p,) = ResponseKL().validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 384, 12, 3))
    assert "student 2, teacher 3" in p.message
    with pytest.raises(ValueError, match="temperature"):
        ResponseKL(temperature=0)


# ---------------------------------------------------------------- feature losses

def hidden(layers: int, B: int, T: int, H: int, seed: int, grad: bool = False):
    return tuple(randn(B, T, H, seed=seed + i, grad=grad) for i in range(layers + 1))


MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)


def ref_feature(loss, hs, ht, mask, dist) -> torch.Tensor:
    """Mean over pairs of the mean over real tokens of dist(proj(h_s), h_t), token by token."""
    per_pair = []
    for (si, ti), proj in zip(loss.pairs, loss.projections):
        vals = [dist(proj(hs[si][b, k]), ht[ti][b, k])
                for b in range(mask.shape[0]) for k in range(mask.shape[1]) if mask[b, k]]
        per_pair.append(torch.stack(vals).mean())
    return torch.stack(per_pair).mean()


mse_dist = lambda a, b: ((a - b) ** 2).mean()  # noqa: E731
cos_dist = lambda a, b: 1 - (a @ b) / (a.norm() * b.norm())  # noqa: E731


@pytest.mark.parametrize("cls, dist", [(FeatureMSE, mse_dist), (FeatureCosine, cos_dist)])
@pytest.mark.parametrize("projection, hs_size", [("identity", 6), ("linear", 4), ("mlp", 4)])
def test_feature_matches_formula(cls, dist, projection, hs_size) -> None:
    loss = cls(layer_map={"strategy": "uniform"}, projection=projection)
    loss.bind(ModelInfo(3, hs_size, 2, 2), ModelInfo(6, 6, 2, 2))
    assert loss.pairs == [(1, 2), (2, 4), (3, 6)]
    hs, ht = hidden(3, 2, 4, hs_size, seed=10), hidden(6, 2, 4, 6, seed=20)
    got = loss(ForwardView(hidden_states=hs), ForwardView(hidden_states=ht), LossBatch(MASK)).total
    with torch.no_grad():
        ref = ref_feature(loss, hs, ht, MASK, dist)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("cls", [FeatureMSE, FeatureCosine])
def test_feature_padding_masked_zero_at_equality_and_grads(cls) -> None:
    loss = cls(layer_map={"strategy": "last_n", "n": 2}, projection="linear")
    loss.bind(ModelInfo(3, 4, 2, 2), ModelInfo(6, 6, 2, 2))
    hs, ht = hidden(3, 2, 4, 4, seed=30, grad=True), hidden(6, 2, 4, 6, seed=40, grad=True)
    out = loss(ForwardView(hidden_states=hs), ForwardView(hidden_states=ht), LossBatch(MASK))
    out.total.backward()
    assert out.components == {"feature": out.total.detach()}
    for s_idx, _ in loss.pairs:
        assert hs[s_idx].grad[MASK].abs().sum() > 0
        assert torch.all(hs[s_idx].grad[~MASK] == 0)
    assert all(h.grad is None for h in ht)
    params = list(loss.parameters())
    assert len(params) == 4 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    # Changing padding positions changes nothing.
    hs2 = tuple(h.detach().clone() for h in hs)
    ht2 = tuple(h.detach().clone() for h in ht)
    for h in hs2 + ht2:
        h[~MASK] = 1e3
    again = loss(ForwardView(hidden_states=hs2), ForwardView(hidden_states=ht2), LossBatch(MASK))
    assert again.total.item() == pytest.approx(out.total.item(), rel=1e-6)
    # Identity projection and equal states: exactly zero.
    same = cls(layer_map={"strategy": "uniform"}, projection="identity")
    same.bind(ModelInfo(6, 6, 2, 2), ModelInfo(6, 6, 2, 2))
    ht3 = tuple(h.detach() for h in ht)
    zero = same(ForwardView(hidden_states=ht3), ForwardView(hidden_states=ht3), LossBatch(MASK))
    assert abs(zero.total.item()) < 1e-6


def test_feature_validate_identity_with_different_sizes() -> None:
    loss = FeatureMSE(projection="identity")
    (p,) = loss.validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 768, 12, 2))
    assert p.key == "loss.projection" and p.value == "identity"
    assert "student 384, teacher 768" in p.message
    assert "loss.projection=linear" in p.fix
    assert "384" in p.render() and "768" in p.render()
    with pytest.raises(ConfigError, match="loss.projection=linear"):
        loss.bind(ModelInfo(3, 384, 12, 2), ModelInfo(6, 768, 12, 2))
    assert FeatureMSE(projection="linear").validate(ModelInfo(3, 384, 12, 2),
                                                    ModelInfo(6, 768, 12, 2)) == []


def test_feature_validate_custom_map_past_last_layer() -> None:
    loss = FeatureCosine(layer_map={"strategy": "custom", "pairs": [[3, 7]]})
    (p,) = loss.validate(ModelInfo(3, 8, 2, 2), ModelInfo(6, 8, 2, 2))
    assert p.key == "loss.layer_map.pairs" and p.value == [3, 7] and "teacher 0..6" in p.message


def test_feature_needs_bind() -> None:
    hs = hidden(3, 2, 4, 4, seed=1)
    with pytest.raises(RuntimeError, match="bind"):
        FeatureMSE()(ForwardView(hidden_states=hs), ForwardView(hidden_states=hs), LossBatch(MASK))


def test_make_projection_kinds() -> None:
    assert sum(p.numel() for p in make_projection("linear", 4, 6).parameters()) == 4 * 6 + 6
    assert sum(p.numel() for p in make_projection("mlp", 4, 6).parameters()) == 30 + 42
    assert list(make_projection("identity", 4, 4).parameters()) == []
    with pytest.raises(ValueError):
        make_projection("identity", 4, 6)
    with pytest.raises(ValueError, match="identity, linear, mlp"):
        make_projection("conv", 4, 6)


# ---------------------------------------------------------------- attention loss

AMASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)


def attn(layers: int, heads: int, seed: int, grad: bool = False, mask=AMASK):
    """Softmaxed [B, H, T, T] maps whose padding keys get zero probability (as in real models)."""
    out = []
    for i in range(layers):
        scores = randn(2, heads, 4, 4, seed=seed + i) * 2
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        out.append(scores.softmax(-1).detach().requires_grad_(grad))
    return tuple(out)


def ref_attention(pairs, a_s, a_t, mask, match: bool) -> torch.Tensor:
    per_pair = []
    for si, ti in pairs:
        s, t = a_s[si - 1], a_t[ti - 1]
        if not match:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        rows = []
        for b in range(2):
            keys = mask[b]
            for q in range(4):
                if mask[b, q]:
                    heads = [ref_kl(t[b, h, q, keys], s[b, h, q, keys]) for h in range(s.shape[1])]
                    rows.append(torch.stack(heads).mean())
        per_pair.append(torch.stack(rows).mean())
    return torch.stack(per_pair).mean()


@pytest.mark.parametrize("head_map, hs, ht", [("average", 2, 4), ("match", 3, 3)])
def test_attention_matches_formula(head_map: str, hs: int, ht: int) -> None:
    loss = AttentionKL(layer_map={"strategy": "uniform"}, head_map=head_map)
    loss.bind(ModelInfo(2, 8, hs, 2), ModelInfo(4, 8, ht, 2))
    assert loss.pairs == [(1, 2), (2, 4)]
    a_s, a_t = attn(2, hs, seed=50), attn(4, ht, seed=60)
    got = loss(ForwardView(attentions=a_s), ForwardView(attentions=a_t), LossBatch(AMASK)).total
    ref = ref_attention(loss.pairs, a_s, a_t, AMASK, match=head_map == "match")
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert got.item() > 0


@pytest.mark.parametrize("head_map", ["average", "match"])
def test_attention_masking_zero_and_grads(head_map: str) -> None:
    loss = AttentionKL(layer_map={"strategy": "first_last"}, head_map=head_map)
    loss.bind(ModelInfo(2, 8, 2, 2), ModelInfo(4, 8, 2, 2))
    a_s, a_t = attn(2, 2, seed=70, grad=True), attn(4, 2, seed=80, grad=True)
    out = loss(ForwardView(attentions=a_s), ForwardView(attentions=a_t), LossBatch(AMASK))
    out.total.backward()
    assert all(a.grad is None for a in a_t)
    for a in a_s:
        assert a.grad.abs().sum() > 0
        assert torch.all(a.grad[1, :, 3, :] == 0)  # padding query row
        assert torch.all(a.grad[1, :, :, 3] == 0)  # padding key column
    # Garbage in padding query rows and padding key columns changes nothing.
    s2 = tuple(a.detach().clone() for a in a_s)
    t2 = tuple(a.detach().clone() for a in a_t)
    for a in s2:
        a[1, :, 3, :] = 0.9
        a[1, :, :, 3] = 0.7
    for a in t2:
        a[1, :, 3, :] = 0.2
        a[1, :, :, 3] = 0.3
    again = loss(ForwardView(attentions=s2), ForwardView(attentions=t2), LossBatch(AMASK)).total
    assert again.item() == pytest.approx(out.total.item(), rel=1e-6)
    # Equal maps give zero (student zeros at padding keys are clamped, not log(0)).
    same = AttentionKL(head_map=head_map)
    same.bind(ModelInfo(4, 8, 2, 2), ModelInfo(4, 8, 2, 2))
    t3 = tuple(a.detach() for a in a_t)
    zero = same(ForwardView(attentions=t3), ForwardView(attentions=t3), LossBatch(AMASK)).total
    assert math.isfinite(zero.item()) and abs(zero.item()) < 1e-6


def test_attention_validate_head_match_and_layer_zero() -> None:
    (p,) = AttentionKL(head_map="match").validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 384, 8, 2))
    assert p.key == "loss.head_map" and "student 12, teacher 8" in p.message
    assert "head_map=average" in p.fix
    assert AttentionKL(head_map="average").validate(ModelInfo(3, 384, 12, 2),
                                                    ModelInfo(6, 384, 8, 2)) == []
    (p,) = AttentionKL(layer_map={"strategy": "custom", "pairs": [[0, 1]]}).validate(
        ModelInfo(3, 384, 12, 2), ModelInfo(6, 384, 12, 2))
    assert p.value == [0, 1] and "student 1..3" in p.message


# ---------------------------------------------------------------- composites

STUDENT, TEACHER = ModelInfo(2, 4, 2, 3), ModelInfo(4, 6, 2, 3)


def far_views(grad: bool = False):
    s = ForwardView(logits=randn(2, 3, seed=90, grad=grad), hidden_states=hidden(2, 2, 4, 4, 91, grad),
                    attentions=attn(2, 2, seed=95, grad=grad))
    t = ForwardView(logits=randn(2, 3, seed=100), hidden_states=hidden(4, 2, 4, 6, 101),
                    attentions=attn(4, 2, seed=105))
    return s, t


def parts():
    return dict(feature=FeatureMSE(projection="linear"), attention=AttentionKL(),
                response=ResponseKL(temperature=2.0))


def test_combined_total_is_weighted_sum_of_unweighted_components() -> None:
    p = parts()
    loss = CombinedLoss(**p, weights={"feature": 0.5, "attention": 2.0, "response": 3.0})
    assert loss.needs.logits and loss.needs.hidden_states and loss.needs.attentions
    assert loss.validate(STUDENT, TEACHER) == []
    loss.bind(STUDENT, TEACHER)
    s, t = far_views(grad=True)
    batch = LossBatch(AMASK)
    out = loss(s, t, batch)
    alone = {k: part(s, t, batch).total.item() for k, part in p.items()}
    assert set(out.components) == {"feature", "attention", "response"}
    for k in alone:
        assert out.components[k].item() == pytest.approx(alone[k], rel=1e-6)
        assert not out.components[k].requires_grad
    expected = 0.5 * alone["feature"] + 2.0 * alone["attention"] + 3.0 * alone["response"]
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    out.total.backward()
    assert s.logits.grad is not None and t.logits.grad is None
    proj = [q for q in loss.parameters()]
    assert len(proj) == 2 * 2 and all(q.grad is not None for q in proj)  # 2 pairs x (W, b)


def test_combined_absent_families_and_default_weights() -> None:
    loss = CombinedLoss(response=ResponseMSE())
    assert loss.needs.logits and not loss.needs.hidden_states and not loss.needs.attentions
    loss.bind(STUDENT, TEACHER)
    s, t = far_views()
    out = loss(s, t, LossBatch(AMASK))
    assert set(out.components) == {"response"}
    assert out.total.item() == pytest.approx(((s.logits - t.logits) ** 2).mean().item(), rel=1e-6)


def test_combined_problems_are_prefixed_with_family() -> None:
    loss = CombinedLoss(feature=FeatureMSE(projection="identity"),
                        attention=AttentionKL(head_map="match"), weights={"feature": -1.0})
    problems = loss.validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 768, 8, 2))
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {"loss.feature.projection", "loss.attention.head_map",
                           "loss.weights.feature"}
    assert "384" in by_key["loss.feature.projection"].message
    assert "loss.feature.projection=linear" in by_key["loss.feature.projection"].fix
    assert "loss.attention.head_map=average" in by_key["loss.attention.head_map"].fix
    assert CombinedLoss().validate(STUDENT, TEACHER)[0].key == "loss"


PHASES = [{"until_step": 100, "weights": {"feature": 1.0, "response": 0.0}},
          {"until_step": None, "weights": {"feature": 0.0, "response": 1.0}}]


def test_staged_weights_follow_step() -> None:
    loss = StagedLoss(feature=FeatureMSE(), response=ResponseKL(), phases=PHASES)
    assert loss.validate(STUDENT, TEACHER) == []
    assert loss.weights_at(0) == {"feature": 1.0, "attention": 0.0, "response": 0.0}
    assert loss.weights_at(99) == {"feature": 1.0, "attention": 0.0, "response": 0.0}
    assert loss.weights_at(100) == {"feature": 0.0, "attention": 0.0, "response": 1.0}
    assert loss.weights_at(10**6) == {"feature": 0.0, "attention": 0.0, "response": 1.0}
    ramp = StagedLoss(feature=FeatureMSE(), response=ResponseKL(), phases=PHASES, ramp_steps=10)
    assert ramp.weights_at(99)["response"] == 0.0
    assert ramp.weights_at(100)["response"] == 0.0  # the ramp starts at the boundary ...
    assert ramp.weights_at(105) == pytest.approx({"feature": 0.5, "attention": 0.0, "response": 0.5})
    assert ramp.weights_at(110)["response"] == 1.0  # ... and ends ramp_steps later


def test_staged_total_and_components_before_and_after_boundary() -> None:
    loss = StagedLoss(feature=FeatureMSE(), response=ResponseKL(), phases=PHASES)
    loss.bind(STUDENT, TEACHER)
    s, t = far_views()
    batch = LossBatch(AMASK)
    early, late = loss(s, t, batch, step=99), loss(s, t, batch, step=100)
    assert early.total.item() == pytest.approx(early.components["feature"].item())
    assert late.total.item() == pytest.approx(late.components["response"].item())
    assert early.components["weight/feature"].item() == 1.0
    assert late.components["weight/feature"].item() == 0.0
    assert late.components["weight/response"].item() == 1.0
    assert early.components["response"].item() == late.components["response"].item()


def test_staged_validate_phases() -> None:
    bad = StagedLoss(response=ResponseKL(), phases=[
        {"until_step": 50, "weights": {"response": 1.0}},
        {"until_step": 20, "weights": {"response": 1.0}},
        {"until_step": 30, "weights": {"respnse": 1.0}}])
    keys = {p.key for p in bad.validate(STUDENT, TEACHER)}
    assert keys == {"loss.phases.1.until_step", "loss.phases.2.until_step",
                    "loss.phases.2.weights.respnse"}
    assert StagedLoss(response=ResponseKL()).validate(STUDENT, TEACHER)[0].key == "loss.phases"


def test_build_loss_sets_name_and_builds_nested_parts() -> None:
    loss = build_loss({
        "_target_": "forge.losses.composite.CombinedLoss", "name": "mine",
        "feature": {"_target_": "forge.losses.feature.FeatureCosine",
                    "layer_map": {"strategy": "last_n", "n": 1, "pairs": None},
                    "projection": "mlp"},
        "response": {"_target_": "forge.losses.response.ResponseCE", "temperature": 3.0},
        "weights": {"feature": 1.0, "attention": 1.0, "response": 2.0},
    })
    assert loss.name == "mine" and isinstance(loss, CombinedLoss)
    assert isinstance(loss.parts["feature"], FeatureCosine)
    assert loss.parts["response"].temperature == 3.0
    assert loss.weights["response"] == 2.0
    ce = build_loss({"_target_": "forge.losses.base.NoDistillation", "name": "ce"})
    assert isinstance(ce, NoDistillation) and ce.name == "ce"
    with pytest.raises(TypeError, match="DistillationLoss"):
        build_loss({"_target_": "torch.nn.Identity", "name": "x"})


# ---------------------------------------------------------------- prompt masking (causal LMs)


def test_query_mask_limits_feature_and_attention_rows_to_targets_but_keeps_prompt_keys() -> None:
    """A causal LM's prompt tokens count in no KD loss: feature rows and attention query rows are
    taken at target tokens only (query_mask), while attention keys still include the prompt."""
    from forge.losses import FeatureMSE

    queries = torch.tensor([[False, False, True, True], [False, True, True, False]])  # targets
    batch = LossBatch(token_mask=AMASK, query_mask=queries)
    att = AttentionKL(layer_map={"strategy": "uniform"}, head_map="average")
    att.bind(ModelInfo(2, 8, 2, 2), ModelInfo(4, 8, 2, 2))
    a_s, a_t = attn(2, 2, seed=90), attn(4, 2, seed=91)
    got = att(ForwardView(attentions=a_s), ForwardView(attentions=a_t), batch).total
    # reference: the formula over target query rows, keys = every real token (prompt included)
    rows = []
    for si, ti in att.pairs:
        s, t = a_s[si - 1].mean(1), a_t[ti - 1].mean(1)
        per = [ref_kl(t[b, q, AMASK[b]], s[b, q, AMASK[b]]) for b in range(2) for q in range(4) if queries[b, q]]
        rows.append(torch.stack(per).mean())
    assert got.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5)

    feat = FeatureMSE(layer_map={"strategy": "uniform"}, projection="identity")
    feat.bind(ModelInfo(2, 8, 2, 2), ModelInfo(4, 8, 2, 2))
    hs = tuple(randn(2, 4, 8, seed=100 + i) for i in range(3))
    ht = tuple(randn(2, 4, 8, seed=200 + i) for i in range(5))
    value = feat(ForwardView(hidden_states=hs), ForwardView(hidden_states=ht), batch).total
    ht_prompt_changed = tuple(h.clone() for h in ht)
    for h in ht_prompt_changed:
        h[~queries] = 50.0  # prompt (and padding) positions: anything
    again = feat(ForwardView(hidden_states=hs), ForwardView(hidden_states=ht_prompt_changed), batch).total
    assert again.item() == pytest.approx(value.item(), rel=1e-6) and value.item() > 0
