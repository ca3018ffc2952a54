"""Every option of every config group composes and builds (found by glob: no YAML goes stale)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, compose_config, group_options

GROUPS = ["task", "model", "mode", "loss", "teacher_strategy", "teacher_backend", "experiment", "logger", "distributed",
          "reward"]
#: teacher strategies that only mode=gkd implements (covered by tests/config/test_gkd_config.py)
GKD_ONLY_STRATEGIES = {"context_baking"}


def test_every_group_has_options():
    for group in GROUPS:
        assert group_options(group), f"conf/{group} has no options"


def _base_for(group: str, option: str) -> list[str]:
    """A compatible neighbourhood for one option (a KD loss needs mode=kd and a trained teacher head)."""
    if group == "loss":
        return ["mode=kd", "teacher_strategy=frozen_sft", f"loss={option}"]
    if group == "mode":
        return [f"mode={option}"]
    if group == "reward":  # rewards are scored on a decoder task's completions
        return ["task=europarl_en_fr", "model=smollm2", "mode=rl", f"reward={option}"]
    if group == "experiment":
        return [f"experiment={option}"]
    return [f"{group}={option}"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_option_composes_with_schema(group, option):
    cfg = compose_config(_base_for(group, option))
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group == "reward":
        assert list(cfg.reward) == [option] and cfg.reward[option].name == option
    elif group != "experiment" and group != "mode":
        assert cfg[group].name == option, f"conf/{group}/{option}.yaml must set name: {option}"
    if group == "mode":
        assert cfg.mode.name == option


@pytest.mark.parametrize("option", group_options("task"))
def test_task_builds_handler(option):
    import hydra.utils

    cfg = compose_config([f"task={option}"])
    handler = hydra.utils.instantiate(cfg.task, _convert_="all")
    if handler.model_kind == "classification":
        assert handler.num_labels >= 2
    assert handler.primary_metric


@pytest.mark.parametrize("option", group_options("loss"))
def test_loss_builds_and_validates_against_offline_pair(option):
    from forge.plan import build_plan

    plan = build_plan(compose_config(["mode=kd", "teacher_strategy=frozen_sft", f"loss={option}"]))
    assert plan.loss.name == option
    assert plan.attn_implementation == ("eager" if plan.loss.needs.attentions else "sdpa")


@pytest.mark.parametrize("option", sorted(set(group_options("teacher_strategy")) - GKD_ONLY_STRATEGIES))
def test_teacher_strategy_plans_with_feature_loss(option):
    from forge.plan import build_plan

    plan = build_plan(compose_config(["mode=kd", "loss=feature_cosine", f"teacher_strategy={option}"]))
    assert plan.teacher_head_trained == (option != "frozen_base")


@pytest.mark.parametrize("option", group_options("model"))
def test_model_specs(option):
    """Offline pairs validate fully; hub pairs resolve to hub ids (reading them needs the network)."""
    from forge.models.loading import model_dir_or_id, validate_model_spec

    cfg = compose_config([f"model={option}", "mode=kd"])
    for role in ("student", "teacher"):
        spec = cfg.model[role]
        assert not validate_model_spec(spec, f"model.{role}")
        target = model_dir_or_id(spec)
        if spec.source == "hub":
            assert target == spec.name_or_path
        else:
            assert (CONF_DIR.parent / target).exists() or __import__("pathlib").Path(target).is_dir()


@pytest.mark.parametrize("option", group_options("experiment"))
def test_experiment_validates(option):
    from forge.plan import build_plan

    build_plan(compose_config([f"experiment={option}"]))


def test_alpha_is_a_top_level_override():
    assert compose_config(["mode=kd", "alpha=0.25"]).alpha == 0.25
    assert compose_config(["mode=kd"]).alpha == 0.5
    assert compose_config(["mode=sft"]).alpha == 0.0


def test_stable_override_names_exist():
    cfg = compose_config([
        "trainer.max_steps=7", "trainer.per_device_train_batch_size=3", "trainer.learning_rate=0.1",
        "task=sst2", "task.data_dir=/x", "task.max_train_samples=5", "task.max_eval_samples=4", "seed=9",
    ])
    assert (cfg.trainer.max_steps, cfg.trainer.per_device_train_batch_size, cfg.trainer.learning_rate) == (7, 3, 0.1)
    assert (cfg.task.data_dir, cfg.task.max_train_samples, cfg.task.max_eval_samples, cfg.seed) == ("/x", 5, 4, 9)


def test_schema_rejects_wrong_type():
    from omegaconf.errors import ValidationError
    from hydra.errors import ConfigCompositionException

    with pytest.raises((ValidationError, ConfigCompositionException)):
        compose_config(["trainer.max_steps=many"])
