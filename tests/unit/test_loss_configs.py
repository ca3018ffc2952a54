"""Every conf/loss/*.yaml composes, builds, binds to the MiniLM pair's shapes and returns a finite
scalar; overrides reach the built objects; bad enum values fail at compose time."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from forge.config.schema import register_schemas
from forge.losses import (
    AttentionKL, CombinedLoss, FeatureMSE, ForwardView, LossBatch, NoDistillation, ResponseKL,
    StagedLoss, build_loss,
)
from forge.models.info import ModelInfo

CONF = Path(__file__).resolve().parents[2] / "conf"
LOSS_NAMES = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))
STUDENT = ModelInfo(num_layers=3, hidden_size=384, num_heads=12, output_size=2)
TEACHER = ModelInfo(num_layers=6, hidden_size=384, num_heads=12, output_size=2)
EXPECTED = {
    "ce", "response_kl", "response_reverse_kl", "response_mse", "response_cosine", "response_ce",
    "feature_mse", "feature_cosine", "attention_kl", "combined_f", "combined_a", "combined_r",
    "combined_fr", "combined_fa", "combined_ar", "combined_far", "staged_fr", "staged_far",
}


def compose_loss(name: str, *overrides: str) -> DictConfig:
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            cfg = compose("config", overrides=[f"loss={name}", "mode=kd", *overrides])
    finally:
        GlobalHydra.instance().clear()
    return cfg.loss


def random_views(B: int = 2, T: int = 5) -> tuple[ForwardView, ForwardView, LossBatch]:
    g = torch.Generator().manual_seed(0)

    def view(info: ModelInfo) -> ForwardView:
        attn = tuple(torch.randn(B, info.num_heads, T, T, generator=g).softmax(-1)
                     for _ in range(info.num_layers))
        return ForwardView(
            logits=torch.randn(B, info.output_size, generator=g, requires_grad=True),
            hidden_states=tuple(torch.randn(B, T, info.hidden_size, generator=g)
                                for _ in range(info.num_layers + 1)),
            attentions=attn,
        )

    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    return view(STUDENT), view(TEACHER), LossBatch(token_mask=mask)


def test_every_option_is_present() -> None:
    assert EXPECTED <= set(LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_compose_build_bind_run(name: str) -> None:
    cfg = compose_loss(name)
    assert cfg.name == name and cfg._target_
    loss = build_loss(cfg)
    assert loss.name == name
    assert loss.validate(STUDENT, TEACHER) == []
    loss.bind(STUDENT, TEACHER)
    s, t, batch = random_views()
    for step in (0, 10**6):  # both phases of staged losses
        out = loss(s, t, batch, step=step)
        assert out.total.dim() == 0 and math.isfinite(out.total.item())
        assert all(math.isfinite(float(v)) for v in out.components.values())
    if not isinstance(loss, NoDistillation):
        assert out.total.item() > 0  # random teacher and student differ everywhere


def test_defaults() -> None:
    far = build_loss(compose_loss("combined_far"))
    assert isinstance(far, CombinedLoss)
    f, a, r = far.parts["feature"], far.parts["attention"], far.parts["response"]
    assert isinstance(f, FeatureMSE) and f.projection.value == "linear"
    assert f.layer_map.strategy.value == "uniform"
    assert isinstance(a, AttentionKL) and a.head_map.value == "average"
    assert isinstance(r, ResponseKL) and r.temperature == 2.0
    assert far.weights == {"feature": 1.0, "attention": 1.0, "response": 1.0}
    fr = build_loss(compose_loss("combined_fr"))
    assert set(fr.parts) == {"feature", "response"} and not fr.needs.attentions


def test_overrides_reach_the_objects() -> None:
    kl = build_loss(compose_loss("response_kl", "loss.temperature=4"))
    assert kl.temperature == 4.0
    far = build_loss(compose_loss(
        "combined_far", "loss.weights.response=2.0", "loss.response.temperature=4",
        "loss.feature.projection=mlp", "loss.attention.head_map=match",
        "loss.feature._target_=forge.losses.feature.FeatureCosine",
    ))
    assert far.weights["response"] == 2.0 and far.parts["response"].temperature == 4.0
    assert far.parts["feature"].projection.value == "mlp"
    assert far.parts["attention"].head_map.value == "match"
    assert type(far.parts["feature"]).__name__ == "FeatureCosine"
    custom = build_loss(compose_loss(
        "feature_mse", "loss.layer_map.strategy=custom", "loss.layer_map.pairs=[[1,2],[3,6]]"))
    custom.bind(STUDENT, TEACHER)
    assert custom.pairs == [(1, 2), (3, 6)]
    dropped = build_loss(compose_loss("combined_far", "loss.attention=null"))
    assert set(dropped.parts) == {"feature", "response"}


def test_staged_schedule_override() -> None:
    staged = build_loss(compose_loss(
        "staged_fr", "loss.phases.0.until_step=500", "loss.ramp_steps=10"))
    assert isinstance(staged, StagedLoss)
    assert staged.weights_at(499) == {"feature": 1.0, "attention": 0.0, "response": 0.0}
    assert staged.weights_at(505)["response"] == pytest.approx(0.5)
    assert staged.weights_at(510) == {"feature": 0.0, "attention": 0.0, "response": 1.0}


@pytest.mark.parametrize("name, override, valid", [
    ("combined_far", "loss.feature.projection=bogus", "identity, linear, mlp"),
    ("feature_mse", "loss.projection=bogus", "identity, linear, mlp"),
    ("attention_kl", "loss.head_map=bogus", "average, match"),
    ("combined_fa", "loss.attention.layer_map.strategy=bogus", "uniform, last_n, first_last, custom"),
    ("response_kl", "loss.temperature=hot", None),
    ("response_kl", "loss.temprature=4", None),  # typo in a key
    ("combined_fr", "loss.weights.respnse=2", None),
    ("staged_fr", "loss.phases.0.weights.feature=lots", None),
])
def test_bad_values_fail_at_compose(name: str, override: str, valid: str | None) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_loss(name, override)
    if valid is not None:
        assert valid in str(info.value.__cause__)


def test_validate_reports_prefixed_problem_for_composed_config() -> None:
    far = build_loss(compose_loss("combined_far", "loss.feature.projection=identity"))
    (p,) = far.validate(ModelInfo(3, 384, 12, 2), ModelInfo(6, 768, 12, 2))
    assert p.key == "loss.feature.projection"
    assert "student 384, teacher 768" in p.message and "loss.feature.projection=linear" in p.fix
