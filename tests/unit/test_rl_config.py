"""mode=rl at config time: what composes, what the mode builds, and every bad input refused with
the key, the value and the fix, before anything loads."""

from __future__ import annotations

import pytest

from forge.config.errors import ConfigError
from forge.plan import build_plan
from tests.conftest import SHARED_DATA, compose_config

BASE = ["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "mode=rl"]


def plan(*overrides: str):
    return build_plan(compose_config([*BASE, *overrides]))


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        plan(*overrides)
    return str(info.value)


def test_rewards_compose_in_order_with_their_weights_and_the_grpo_arguments():
    built = plan("reward=[chrf,length_penalty]", "rl.reward_weights=[1.0,0.2]", "rl.beta=0.04", "rl.loss_type=grpo")
    assert [r.name for r in built.mode.rewards] == ["chrf", "length_penalty"]
    args = built.mode.trainer_arguments()
    assert args["reward_weights"] == [1.0, 0.2] and args["beta"] == 0.04 and args["loss_type"] == "grpo"
    assert args["num_generations"] == 8 and built.mode.args_class.__name__ == "GRPOConfig"
    assert built.teacher_kind is None  # no reward reads a teacher and the KL pulls toward the reference


def test_a_teacher_joins_the_loop_through_its_reward_or_the_kl_term():
    assert plan("reward=[chrf,teacher_logprob]").teacher_needs.dense_logits
    kl = plan("reward=chrf", "rl.kl_to=teacher", "rl.beta=0.04")
    assert kl.teacher_kind is not None and kl.cache is not None and not kl.cache.enabled
    # with kl_to=teacher TRL must not load a reference model: the trainer puts the teacher there
    assert kl.mode.trainer_arguments()["beta"] == 0.0 and kl.mode.settings.beta == 0.04


def test_too_few_generations_are_refused():
    message = refused("reward=chrf", "rl.num_generations=1")
    assert "rl.num_generations=1: must be >= 2" in message


def test_a_generation_batch_that_does_not_hold_whole_groups_is_refused():
    message = refused("reward=chrf", "rl.num_generations=3", "trainer.per_device_train_batch_size=8")
    assert "rl.num_generations" in message and "not divisible by rl.num_generations=3" in message
    assert "trainer.per_device_train_batch_size=3" in message


def test_an_unknown_reward_fails_at_compose_listing_the_valid_ones():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as info:
        compose_config([*BASE, "reward=bleurt"])
    assert "reward/bleurt" in str(info.value) and "chrf" in str(info.value)


def test_weights_that_do_not_match_the_rewards_are_refused():
    message = refused("reward=[chrf,length_penalty]", "rl.reward_weights=[1.0]")
    assert "rl.reward_weights" in message and "1 weight(s) for 2 reward(s) (chrf, length_penalty)" in message


def test_no_reward_is_refused_with_the_options():
    assert "mode=rl needs at least one reward" in refused()


def test_rl_on_a_classification_task_is_refused_with_a_fix():
    message = build_refusal(["task=demo", "model=minilm", "mode=rl", "reward=chrf"])
    assert "needs a decoder (prompt -> completion) task" in message and "task=europarl_en_fr" in message


def build_refusal(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        build_plan(compose_config(overrides))
    return str(info.value)


def test_kl_to_teacher_with_a_teacher_of_another_tokenizer_is_refused():
    message = refused("reward=chrf", "rl.kl_to=teacher", "rl.beta=0.04", "model.teacher.name_or_path=all-MiniLM-L6-v2")
    assert "tokenizers differ (vocabulary of 49152 tokens vs 30522)" in message


def test_kl_to_teacher_without_a_kl_term_and_unknown_choices_are_refused():
    assert "has no effect with rl.beta=0" in refused("reward=chrf", "rl.kl_to=teacher")
    message = refused("reward=chrf", "rl.loss_type=ppo")
    assert "rl.loss_type='ppo' is not one of: grpo, dr_grpo, dapo" in message


def test_a_served_teacher_needs_a_top_k_view():
    message = refused("reward=teacher_logprob", "teacher_backend=openai")
    assert "rl.teacher_top_k" in message and "set rl.teacher_top_k=20" in message
    assert plan("reward=teacher_logprob", "teacher_backend=openai", "rl.teacher_top_k=20").teacher_needs.topk


def test_rewards_are_refused_by_a_mode_that_ignores_them():
    message = build_refusal([*BASE[:-1], "mode=sft", "reward=chrf"])
    assert "mode=sft does not optimise rewards" in message


def test_unknown_rl_settings_and_reward_options_are_refused():
    assert "unknown setting(s) of mode=rl" in refused("reward=chrf", "+rl.gamma=0.9")
    assert "reward.chrf" in refused("reward=chrf", "+reward.chrf.order=9")
