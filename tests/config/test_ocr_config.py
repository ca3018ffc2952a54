"""Page tasks at config time: the judged commands plan, and every misuse is refused before any
weights load or any file is written, naming the key and the fix."""

from __future__ import annotations

import pytest

from forge.config.errors import ConfigError
from forge.plan import build_plan
from tests.conftest import compose_config

PAGES = ["task=ocr_synth", "model=tiny_vlm", "trainer.max_steps=5"]


def problems_of(overrides: list[str]) -> list:
    with pytest.raises(ConfigError) as info:
        build_plan(compose_config(overrides))
    return info.value.problems


@pytest.mark.parametrize("extra", [
    ["mode=kd", "loss=combined_far"], ["mode=gkd"], ["mode=rl", "reward=edit_similarity"], ["mode=sft"], ["mode=eval"],
])
def test_the_judged_commands_plan(extra):
    plan = build_plan(compose_config([*PAGES, *extra]))
    assert plan.handler.model_kind == "vision_lm" and plan.student_info.num_layers == 2
    assert not plan.cache.enabled
    if plan.teacher_needs is not None:  # a mode with a teacher: the cache says why it cannot serve pages
        assert "page images" in plan.cache.reason


def test_a_text_only_model_is_refused_with_the_fix():
    problems = problems_of(["task=ocr_synth", "model=smollm2", "mode=sft"])
    assert [p.key for p in problems] == ["model.student"]
    assert "vision_config" in problems[0].message and "model=tiny_vlm" in problems[0].fix


def test_a_server_teacher_without_images_and_bad_page_settings_are_refused():
    problems = problems_of([*PAGES, "mode=gkd", "teacher_backend=openai", "mode.trainer.top_k=5",
                            "+task.page.font_sise=12", "task.page.speckle=0.9"])
    assert {"teacher_backend", "task.page.font_sise", "task.page.speckle"} <= {p.key for p in problems}


def test_mode_eval_trains_nothing_and_refuses_alpha():
    problems = problems_of([*PAGES, "mode=eval", "alpha=0.5"])
    assert [p.key for p in problems] == ["alpha"]


def test_a_teacher_reward_that_would_not_see_the_page_is_refused():
    problems = problems_of([*PAGES, "mode=rl", "reward=[edit_similarity,teacher_logprob]"])
    assert [p.key for p in problems] == ["reward.teacher_logprob"] and "rl.kl_to=teacher" in problems[0].fix


@pytest.mark.parametrize("mode", [["mode=kd", "loss=combined_r"], ["mode=rl", "reward=edit_similarity"], ["mode=sft"]])
def test_a_teacher_view_is_refused_where_no_teacher_reads_it(mode):
    problems = problems_of([*PAGES, *mode, "task.teacher_max_pixels=401408"])
    assert [p.key for p in problems] == ["task.teacher_max_pixels"] and "mode=gkd" in problems[0].fix
    assert build_plan(compose_config([*PAGES, "mode=gkd", "task.teacher_max_pixels=401408"]))


def test_a_vlm_chat_server_only_generates_from_pages():
    """teacher_backend=vlm_server takes pages in chat messages but scores no prompt tokens: token-level
    GKD on pages is refused with the sequence-level fix, and sequence-level KD plans."""
    problems = problems_of([*PAGES, "mode=gkd", "teacher_backend=vlm_server", "mode.trainer.top_k=5"])
    assert [p.key for p in problems] == ["teacher_backend"]
    assert "page images for generation" not in problems[0].message  # on pages it gives generation only
    assert "generation, page images" in problems[0].message and "seq_kd=true" in problems[0].fix
    plan = build_plan(compose_config([*PAGES, "mode=gkd", "teacher_backend=vlm_server", "mode.trainer.seq_kd=true",
                                      "mode.trainer.lmbda=0"]))
    assert plan.teacher_needs.generate and not plan.teacher_needs.reads_tokens


def test_capabilities_for_page_prompts():
    from forge.teachers.backends.base import Capabilities

    server = Capabilities(topk_logprobs=True, generate=True, images=True, max_k=20)
    assert server.describe() == "top-k log-probabilities, generation, page images for generation only"
    assert server.for_prompts(images=False) is server
    assert server.for_prompts(images=True) == Capabilities(generate=True, images=True)
    in_process = Capabilities(dense_logits=True, topk_logprobs=True, generate=True, images=True, image_scoring=True)
    assert in_process.for_prompts(images=True) is in_process


@pytest.mark.parametrize("loss", ["ce", "combined_far"])
def test_the_page_far_study_plans_every_arm(loss):
    plan = build_plan(compose_config(["experiment=far_study_ocr", f"loss={loss}", "seed=1"]))
    assert plan.handler.name == "ocr_synth" and plan.handler.max_pixels == 256 * 256
    assert plan.teacher_needs is not None and not plan.cache.enabled
