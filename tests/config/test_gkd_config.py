"""mode=gkd, teacher backends and context baking: every misuse is refused when the config is
checked (no weights loaded, no server contacted), naming the key and the fix."""

from __future__ import annotations

import pytest

from forge.config.errors import ConfigError
from forge.plan import build_plan
from forge.teachers.cache.teacher_text import TeacherText
from tests.conftest import SHARED_DATA, compose_config

EUROPARL = [f"task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2"]


def problems_of(overrides: list[str]) -> list:
    with pytest.raises(ConfigError) as info:
        build_plan(compose_config(overrides))
    return info.value.problems


def keys(problems) -> set[str]:
    return {p.key for p in problems}


def test_the_judged_gkd_config_is_valid_and_plans_the_hf_backend():
    cfg = compose_config([*EUROPARL, "mode=gkd", "trainer.max_steps=5"])
    plan = build_plan(cfg)
    assert cfg.teacher_strategy.name == "frozen_base"  # mode=gkd's default: the teacher as it is
    assert plan.backend_cls.__name__ == "HFTeacherBackend" and plan.handler.model_kind == "causal_lm"
    assert plan.teacher_info.head_trained  # an LM head is pretrained: response losses are allowed
    assert build_plan(compose_config([*EUROPARL, "mode=gkd", "teacher_strategy=context_baking"]))


def test_gkd_needs_a_decoder_task_and_its_own_loss():
    problems = problems_of(["task=demo", "model=minilm", "mode=gkd", "loss=response_kl", "alpha=0.5"])
    assert {"mode", "loss", "alpha"} <= keys(problems)
    text = " ".join(p.render() if hasattr(p, "render") else str(p) for p in problems)
    assert "europarl_en_fr" in text and "sft_weight" in text


@pytest.mark.parametrize("override, needle", [
    ("mode.trainer.lmbda=1.5", "lmbda"), ("mode.trainer.beta=2", "beta"),
    ("mode.trainer.temperature=0", "temperature"), ("mode.trainer.max_new_tokens=0", "max_new_tokens"),
])
def test_gkd_settings_out_of_range_are_refused(override, needle):
    problems = problems_of([*EUROPARL, "mode=gkd", override])
    assert keys(problems) == {f"mode.trainer.{needle}"} and override.split("=")[1] in problems[0].render()


def test_gkd_refuses_a_cotrained_teacher():
    assert "teacher_strategy" in keys(problems_of([*EUROPARL, "mode=gkd", "teacher_strategy=cotrain_base"]))


def test_context_baking_outside_gkd_is_refused_with_the_gkd_fix():
    (problem,) = problems_of([*EUROPARL, "mode=kd", "loss=response_kl", "teacher_strategy=context_baking"])
    assert problem.key == "teacher_strategy.context" and "mode=gkd" in problem.fix


def test_a_loss_needing_more_than_a_server_gives_is_refused_before_anything_loads():
    """A server teacher gives top-k log-probabilities and generations, never hidden states."""
    problems = problems_of([*EUROPARL, "mode=kd", "loss=feature_mse", "teacher_strategy=frozen_base",
                            "teacher_backend=openai"])
    (problem,) = [p for p in problems if p.key == "teacher_backend"]
    assert "hidden states" in problem.message and "teacher_backend=hf" in problem.fix


def test_a_server_teacher_needs_a_top_k_and_cannot_be_fine_tuned():
    problems = problems_of([*EUROPARL, "mode=gkd", "teacher_backend=openai", "teacher_strategy=frozen_sft"])
    assert {"mode.trainer.top_k", "teacher_strategy"} <= keys(problems)
    problems = problems_of([*EUROPARL, "mode=gkd", "teacher_backend=vllm", "mode.trainer.top_k=50"])
    assert keys(problems) == {"mode.trainer.top_k"} and "20" in problems[0].fix


def test_gkd_with_a_server_teacher_and_context_baking_is_valid():
    plan = build_plan(compose_config([*EUROPARL, "mode=gkd", "teacher_backend=openai", "mode.trainer.top_k=8",
                                             "teacher_strategy=context_baking", "mode.trainer.seq_kd=true"]))
    assert not plan.backend_cls.needs_local_model and plan.backend_cls.declared_capabilities({}).generate


@pytest.mark.parametrize("loss", ["combined_f", "combined_a", "combined_r"])
def test_decoder_kd_never_uses_the_signal_cache_and_says_why(loss):
    """The store indexes tokenised classification inputs; a prompt → completion example is laid out
    by its collator. Feature-only decoder KD used to reach the store and fail on a missing input_ids
    column; now the plan falls back to the live teacher with the reason."""
    plan = build_plan(compose_config([*EUROPARL, "mode=kd", f"loss={loss}", "teacher_strategy=frozen_base"]))
    assert not plan.cache.enabled
    assert ("collator" if loss != "combined_r" else "too large to store") in plan.cache.reason


def test_a_tail_bucket_needs_a_backend_with_the_tail_mass_a_top_k_and_temperature_1():
    tail = ["mode=gkd", "mode.trainer.tail_bucket=true", "mode.trainer.top_k=8"]
    problems = problems_of([*EUROPARL, *tail, "teacher_backend=openai", "mode.trainer.temperature=1.0"])
    (problem,) = problems
    assert problem.key == "mode.trainer.tail_bucket" and "teacher_backend=openai cannot give" in problem.message
    assert "teacher_backend=hf" in problem.fix
    (problem,) = problems_of([*EUROPARL, *tail])
    assert "temperature 1 only" in problem.message and "temperature=1.0" in problem.fix
    (problem,) = problems_of([*EUROPARL, "mode=gkd", "mode.trainer.tail_bucket=true", "mode.trainer.temperature=1.0"])
    assert "top_k is null" in problem.message
    plan = build_plan(compose_config([*EUROPARL, *tail, "mode.trainer.temperature=1.0", "mode.trainer.lmbda=0.0"]))
    assert plan.cache.enabled and plan.cache.topk.tail and plan.cache.topk.entries[-1] == "topk_tail"


def test_stored_teacher_completions_need_seq_kd_a_top_k_and_the_cache():
    stored = ["mode=gkd", "mode.trainer.seq_kd_completions=stored", "mode.trainer.lmbda=0.0"]
    (problem,) = problems_of([*EUROPARL, *stored, "mode.trainer.top_k=8"])
    assert problem.key == "mode.trainer.seq_kd_completions" and "seq_kd=true" in problem.fix
    (problem,) = problems_of([*EUROPARL, *stored, "mode.trainer.seq_kd=true"])
    assert "top_k is null" in problem.message
    (problem,) = problems_of([*EUROPARL, *stored, "mode.trainer.seq_kd=true", "mode.trainer.top_k=8", "teacher.cache=off"])
    assert "teacher.cache is off" in problem.message
    (problem,) = problems_of([*EUROPARL, "mode=gkd", "mode.trainer.seq_kd_completions=once"])
    assert "mode.trainer.seq_kd_completions" in problem.render() and "valid: sampled, stored" in problem.render()
    plan = build_plan(compose_config([*EUROPARL, *stored, "mode.trainer.seq_kd=true", "mode.trainer.top_k=8",
                                      "mode.trainer.max_new_tokens=6", "seed=5"]))
    assert plan.cache.enabled and plan.cache.topk.teacher_text == TeacherText(6, 0.9, 5)
    sampled = build_plan(compose_config([*EUROPARL, "mode=gkd", "mode.trainer.seq_kd=true", "mode.trainer.top_k=8",
                                         "mode.trainer.lmbda=0.0"]))
    assert not sampled.cache.enabled and "seq_kd_completions=stored" in sampled.cache.reason
