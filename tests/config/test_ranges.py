"""Numeric keys are range-checked at config time (forge.config.ranges): each out-of-range value is
reported with its full dotted key, the range in words and a fix; boundary values pass; every shipped
option of every group composes without a range problem."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Optional

import pytest

from forge.config import schema as forge_schema
from forge.config.ranges import (
    Range,
    at_least,
    config_range_problems,
    config_unknown_key_problems,
    field_range,
    in_range,
    non_negative,
    positive,
    range_problems,
    unknown_key_problems,
)
from forge.config import loss_schema, model_schema
from tests.conftest import compose_config, group_options

GROUPS = ["task", "model", "mode", "loss", "teacher_strategy", "teacher_backend", "experiment", "logger"]


# ---- the helpers on plain dicts ------------------------------------------------------------------

@dataclass
class Inner:
    rate: float = positive(default=0.5)


@dataclass
class Step:
    until: Optional[int] = at_least(1, default=None)


@dataclass
class Toy:
    steps: int = at_least(1, default=10)
    share: float = in_range(0, 1, high_open=True, default=0.1)
    weight: float = non_negative(default=1.0)
    cap: Optional[int] = at_least(1, default=None)
    code: int = in_range(0, 255, default=75)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    maybe: Optional[Inner] = None
    steps_list: list[Step] = field(default_factory=list)


def _by_key(problems) -> dict:
    return {p.key: p for p in problems}


def test_helpers_keep_defaults_and_attach_ranges():
    toy = Toy()
    assert (toy.steps, toy.share, toy.cap) == (10, 0.1, None)
    assert field_range(Toy, "steps") == Range(low=1)
    assert field_range(Toy, "share") == Range(low=0, high=1, high_open=True)
    assert field_range(Toy, "flag") is None


@pytest.mark.parametrize("allowed,words", [
    (Range(low=1), "must be >= 1"),
    (Range(low=0, low_open=True), "must be > 0"),
    (Range(low=0, high=1), "must lie in [0, 1]"),
    (Range(low=0, high=1, high_open=True), "must lie in [0, 1)"),
    (Range(low=0, high=1, low_open=True), "must lie in (0, 1]"),
])
def test_ranges_in_words(allowed, words):
    assert allowed.describe() == words
    assert allowed.describe(nullable=True) == words + " or null"


def test_plain_dict_out_of_range_values_name_key_range_and_fix():
    problems = _by_key(range_problems(
        {"steps": 0, "share": 1.0, "weight": -0.5, "cap": 0, "code": 256, "inner": {"rate": 0.0},
         "maybe": {"rate": -1}, "steps_list": [{"until": 5}, {"until": 0}]},
        Toy, "mode.trainer"))
    assert set(problems) == {"mode.trainer.steps", "mode.trainer.share", "mode.trainer.weight",
                             "mode.trainer.cap", "mode.trainer.code", "mode.trainer.inner.rate",
                             "mode.trainer.maybe.rate", "mode.trainer.steps_list.1.until"}
    steps = problems["mode.trainer.steps"]
    assert (steps.value, steps.message, steps.fix) == (0, "must be >= 1.", "set mode.trainer.steps=10")
    assert problems["mode.trainer.share"].message == "must lie in [0, 1)."
    assert problems["mode.trainer.cap"].message == "must be >= 1 or null."
    assert problems["mode.trainer.cap"].fix == "set mode.trainer.cap=1 (or mode.trainer.cap=null)"
    assert problems["mode.trainer.inner.rate"].message == "must be > 0."
    assert "mode.trainer.steps=0: must be >= 1. Fix: set mode.trainer.steps=10" == steps.render()


def test_plain_dict_boundaries_none_bools_and_missing_pass():
    ok = {"steps": 1, "share": 0.0, "weight": 0, "cap": None, "code": 255, "flag": True,
          "inner": {"rate": 1e-12}, "maybe": None, "steps_list": [{"until": 1}, {"until": None}]}
    assert range_problems(ok, Toy) == []
    assert range_problems({"share": 0.999999, "code": 0}, Toy) == []
    assert range_problems({"steps": "???"}, Toy) == []  # missing: OmegaConf reports it
    assert range_problems({}, Toy) == []  # absent keys keep their (valid) defaults


def test_non_finite_values_are_refused():
    problems = range_problems({"weight": math.inf, "share": math.nan}, Toy)
    assert {p.key for p in problems} == {"weight", "share"}


def test_unknown_keys_on_a_plain_dict():
    problems = unknown_key_problems({"steps": 1, "stesp": 2, "inner": {"rat": 1}}, Toy, "mode.trainer")
    assert [p.key for p in problems] == ["mode.trainer.stesp", "mode.trainer.inner.rat"]
    assert "did you mean mode.trainer.steps?" in problems[0].fix
    assert problems[0].value is None  # never echoed: an unknown key may carry a secret


def test_a_settings_dataclass_as_a_mode_would_check_it():
    """What a mode object does with its own `mode.trainer.*` settings."""

    @dataclass
    class Settings:
        lmbda: float = in_range(0, 1, default=0.5)
        max_new_tokens: int = at_least(1, default=64)
        top_k: Optional[int] = at_least(1, default=None)

    problems = range_problems({"lmbda": 1.5, "max_new_tokens": 64, "top_k": 0}, Settings, "mode.trainer")
    assert [(p.key, p.message) for p in problems] == [
        ("mode.trainer.lmbda", "must lie in [0, 1]."), ("mode.trainer.top_k", "must be >= 1 or null.")]


# ---- every numeric field of the schemas declares its range ----------------------------------------

SCHEMAS = [
    forge_schema.TrainerConfig, forge_schema.TaskConfig, forge_schema.GlueTaskConfig,
    forge_schema.TranslationTaskConfig, forge_schema.TeacherStrategyConfig, forge_schema.TeacherConfig,
    model_schema.LoraSpec, model_schema.Int4QATConfig, forge_schema.SignalsConfig, forge_schema.ForgeConfig,
    forge_schema.HFBackendConfig, forge_schema.OpenAIBackendConfig,
    loss_schema.LayerMapConfig, loss_schema.ResponsePart, loss_schema.ResponseLossConfig,
    loss_schema.FamilyWeights, loss_schema.PhaseWeights, loss_schema.Phase, loss_schema.StagedLossConfig,
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_numeric_field_has_a_range(schema):
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
        if inner in (int, float):
            assert field_range(schema, f.name) is not None, f"{schema.__name__}.{f.name} has no range"


# ---- the composed config: every group ------------------------------------------------------------

OUT_OF_RANGE = [
    (["trainer.max_steps=-5"], "trainer.max_steps", "must be >= 1", "set trainer.max_steps=100"),
    (["trainer.learning_rate=-1"], "trainer.learning_rate", "must be > 0", "set trainer.learning_rate=5e-05"),
    (["trainer.per_device_train_batch_size=0"], "trainer.per_device_train_batch_size", "must be >= 1", None),
    (["trainer.per_device_eval_batch_size=0"], "trainer.per_device_eval_batch_size", "must be >= 1", None),
    (["trainer.gradient_accumulation_steps=0"], "trainer.gradient_accumulation_steps", "must be >= 1", None),
    (["trainer.weight_decay=-0.1"], "trainer.weight_decay", "must be >= 0", None),
    (["trainer.warmup_ratio=1.5"], "trainer.warmup_ratio", "must lie in [0, 1]", None),
    (["trainer.max_grad_norm=-1"], "trainer.max_grad_norm", "must be >= 0", None),
    (["trainer.logging_steps=0"], "trainer.logging_steps", "must be >= 1", None),
    (["trainer.save_steps=-1"], "trainer.save_steps", "must be >= 0", None),
    (["trainer.save_total_limit=0"], "trainer.save_total_limit", "must be >= 1 or null", None),
    (["trainer.eval_steps=-1"], "trainer.eval_steps", "must be >= 0", None),
    (["trainer.dataloader_num_workers=-1"], "trainer.dataloader_num_workers", "must be >= 0", None),
    (["task.max_length=0"], "task.max_length", "must be >= 1", "set task.max_length=128"),
    (["task.max_train_samples=0"], "task.max_train_samples", "must be >= 1 or null", None),
    (["task=sst2", "task.max_eval_samples=-3"], "task.max_eval_samples", "must be >= 1 or null", None),
    (["task=sst2", "task.seed=-1"], "task.seed", "must lie in [0, 4294967295]", None),
    (["task=europarl_en_fr", "task.max_new_tokens=0"], "task.max_new_tokens", "must be >= 1", None),
    (["task=europarl_en_fr", "task.num_beams=0"], "task.num_beams", "must be >= 1", None),
    (["task=europarl_en_fr", "task.max_length=0"], "task.max_length", "must be >= 1", "set task.max_length=256"),
    (["teacher_strategy.finetune_steps=0"], "teacher_strategy.finetune_steps", "must be >= 1", None),
    (["teacher_strategy.finetune_learning_rate=0"], "teacher_strategy.finetune_learning_rate", "must be > 0", None),
    (["teacher_strategy.finetune_batch_size=0"], "teacher_strategy.finetune_batch_size", "must be >= 1", None),
    (["teacher_strategy.seed=-2"], "teacher_strategy.seed", "must lie in [0, 4294967295] or null", None),
    (["teacher.cache_batch_size=0"], "teacher.cache_batch_size", "must be >= 1", None),
    (["model.student.lora.dropout=1.5"], "model.student.lora.dropout", "must lie in [0, 1)",
     "set model.student.lora.dropout=0.05"),
    (["model.student.lora.r=0"], "model.student.lora.r", "must be >= 1", None),
    (["model.teacher.lora.alpha=0"], "model.teacher.lora.alpha", "must be > 0", None),
    (["signals.exit_code=256"], "signals.exit_code", "must lie in [0, 255]", "set signals.exit_code=75"),
    (["seed=-1"], "seed", "must lie in [0, 4294967295]", "set seed=42"),
    (["mode=kd", "alpha=1.5"], "alpha", "must lie in [0, 1]", None),
    (["mode=kd", "loss=response_kl", "loss.temperature=0"], "loss.temperature", "must be > 0",
     "set loss.temperature=2"),
    (["mode=kd", "loss=combined_far", "loss.weights.feature=-1"], "loss.weights.feature", "must be >= 0", None),
    (["mode=kd", "loss=combined_fr", "loss.response.temperature=-2"], "loss.response.temperature", "must be > 0",
     None),
    (["mode=kd", "loss=combined_far", "loss.attention.layer_map.n=0"], "loss.attention.layer_map.n",
     "must be >= 1", None),
    (["mode=kd", "loss=feature_mse", "loss.layer_map.n=0"], "loss.layer_map.n", "must be >= 1", None),
    (["mode=kd", "loss=staged_far", "loss.ramp_steps=-1"], "loss.ramp_steps", "must be >= 0", None),
    (["mode=kd", "loss=staged_far", "loss.phases.0.until_step=0"], "loss.phases.0.until_step",
     "must be >= 1 or null", None),
    (["mode=kd", "loss=staged_fr", "loss.phases.1.weights.response=-1"], "loss.phases.1.weights.response",
     "must be >= 0", None),
    (["teacher_backend=hf", "teacher_backend.top_k=0"], "teacher_backend.top_k", "must be >= 1 or null", None),
    (["teacher_backend=openai", "teacher_backend.timeout_s=0"], "teacher_backend.timeout_s", "must be > 0", None),
    (["teacher_backend=vllm", "teacher_backend.max_retries=-1"], "teacher_backend.max_retries", "must be >= 0",
     None),
    (["teacher_backend=openai", "teacher_backend.max_k=0"], "teacher_backend.max_k", "must be >= 1 or null", None),
]


@pytest.mark.parametrize("overrides,key,words,fix", OUT_OF_RANGE, ids=[case[1] for case in OUT_OF_RANGE])
def test_out_of_range_value_is_reported_with_key_range_and_fix(overrides, key, words, fix):
    problems = config_range_problems(compose_config(overrides))
    assert [p.key for p in problems] == [key]
    problem = problems[0]
    assert problem.message == words + "."
    assert problem.fix.startswith(f"set {key}=")
    if fix is not None:
        assert problem.fix.split(" (or")[0] == fix
    assert problem.render().startswith(f"{key}=")


def test_several_problems_are_reported_together():
    cfg = compose_config(["trainer.max_steps=-5", "task.max_length=0", "model.student.lora.dropout=1.5",
                          "mode=kd", "loss=combined_far", "loss.weights.feature=-1"])
    assert {p.key for p in config_range_problems(cfg)} == {
        "trainer.max_steps", "task.max_length", "model.student.lora.dropout", "loss.weights.feature"}


def test_an_interpolated_value_is_reported_where_it_is_set():
    """task.seed is ${seed}: a bad top-level seed is one problem, at `seed`."""
    assert [p.key for p in config_range_problems(compose_config(["seed=-1"]))] == ["seed"]


BOUNDARIES = [
    "trainer.max_steps=1", "trainer.warmup_ratio=1", "trainer.weight_decay=0", "trainer.max_grad_norm=0",
    "trainer.save_steps=0", "trainer.eval_steps=0", "trainer.save_total_limit=1", "trainer.save_total_limit=null",
    "trainer.learning_rate=1e-12", "task.max_length=1", "task.max_train_samples=1", "task.max_eval_samples=null",
    "teacher_strategy.seed=0", "teacher_strategy.seed=4294967295", "teacher_strategy.finetune_steps=1",
    "model.student.lora.dropout=0", "model.student.lora.dropout=0.999", "model.student.lora.r=1",
    "signals.exit_code=0", "signals.exit_code=255", "seed=0", "teacher.cache_batch_size=1",
]


def test_boundary_values_are_accepted():
    assert config_range_problems(compose_config(BOUNDARIES)) == []
    kd = ["mode=kd", "alpha=1"]
    assert config_range_problems(compose_config(kd + ["loss=staged_far", "loss.ramp_steps=0",
                                                      "loss.phases.0.until_step=1", "loss.phases.0.weights.feature=0",
                                                      "loss.feature.layer_map.n=1"])) == []
    assert config_range_problems(compose_config(kd + ["loss=combined_far", "loss.weights.response=0",
                                                      "loss.response.temperature=0.01"])) == []
    assert config_range_problems(compose_config(["alpha=0"])) == []
    assert config_range_problems(compose_config(["task=europarl_en_fr", "task.num_beams=1",
                                                 "task.max_new_tokens=1", "teacher_backend=openai",
                                                 "teacher_backend.echo_max_tokens=0", "teacher_backend.max_retries=0",
                                                 "teacher_backend.backoff_s=0", "teacher_backend.max_k=1"])) == []


def _base_for(group: str, option: str) -> list[str]:
    if group == "loss":
        return ["mode=kd", "teacher_strategy=frozen_sft", f"loss={option}"]
    return [f"{group}={option}"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_option_has_no_range_or_key_problem(group, option):
    cfg = compose_config(_base_for(group, option))
    assert config_range_problems(cfg) == []
    assert config_unknown_key_problems(cfg) == []


def test_the_default_config_has_no_problem():
    cfg = compose_config([])
    assert config_range_problems(cfg) == [] and config_unknown_key_problems(cfg) == []


def test_fsdp_is_refused_on_a_machine_without_gpus():
    import torch

    from forge.config.errors import ConfigError
    from forge.plan import build_plan

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: FSDP is allowed")
    with pytest.raises(ConfigError) as err:
        build_plan(compose_config(["distributed=fsdp"]))
    (problem,) = err.value.problems
    assert problem.key == "distributed" and "distributed=ddp" in problem.fix and "silently" in problem.message
