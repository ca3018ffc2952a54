"""teacher_backend=tesseract: a generation-only OCR teacher. Every mode that reads the teacher's
token probabilities or features refuses it when the config is checked, naming the backend and the fix."""

from __future__ import annotations

import hydra.utils
import pytest

from forge.config.errors import ConfigError
from forge.plan import build_plan
from tests.conftest import SHARED_DATA, compose_config

OCR = ["task=ocr_synth", "model=tiny_vlm", "teacher_backend=tesseract"]


def refusal(overrides: list[str]):
    with pytest.raises(ConfigError) as info:
        build_plan(compose_config(overrides))
    (problem,) = [p for p in info.value.problems if p.key == "teacher_backend"]
    return problem


@pytest.mark.parametrize("top_k", [[], ["mode.trainer.top_k=8"]])
def test_gkd_with_tesseract_is_refused_for_its_missing_token_probabilities(top_k):
    problem = refusal([*OCR, "mode=gkd", *top_k])
    assert "mode=gkd scores every completion token" in problem.message
    assert "teacher_backend=tesseract gives no token probabilities (it gives: generation, page images)" in problem.message
    assert "teacher_backend=hf" in problem.fix and "top_k=20" not in problem.fix


@pytest.mark.parametrize("loss,reads", [("combined_r", "dense logits"), ("feature_cosine", "hidden states")])
def test_kd_losses_with_tesseract_are_refused_without_suggesting_gkd(loss, reads):
    problem = refusal([*OCR, "mode=kd", "teacher_strategy=frozen_base", f"loss={loss}"])
    assert f"reads the teacher's {reads}" in problem.message and "teacher_backend=tesseract" in problem.message
    assert problem.fix == "use teacher_backend=hf"


def test_rl_reading_the_teacher_through_tesseract_is_refused():
    problem = refusal(["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2",
                       "mode=rl", "reward=teacher_logprob", "rl.teacher_top_k=20", "teacher_backend=tesseract"])
    assert "mode=rl reads the teacher's per-token log-probabilities" in problem.message


def test_the_tesseract_node_builds_its_backend_and_checks_its_settings():
    cfg = compose_config([*OCR, "teacher_backend.lang=eng+fra", "teacher_backend.psm=4"])
    backend = hydra.utils.instantiate(cfg.teacher_backend, _convert_="all", tokenizer=None)
    assert (backend.name, backend.lang, backend.psm, backend.scale) == ("tesseract", "eng+fra", 4, 2.0)
    assert not backend.needs_local_model and backend.capabilities.describe() == "generation, page images"
    with pytest.raises(ConfigError, match="teacher_backend.psm"):
        build_plan(compose_config([*OCR, "teacher_backend.psm=0"]))


def test_gkd_with_tesseract_plans_sequence_level_kd():
    """seq_kd with no on-policy batches needs only generation: the plan accepts it."""
    plan = build_plan(compose_config([*OCR, "mode=gkd", "mode.trainer.seq_kd=true", "mode.trainer.lmbda=0"]))
    assert plan.teacher_needs.generate and not plan.teacher_needs.topk and not plan.teacher_needs.dense_logits
    problem = refusal([*OCR, "mode=gkd", "mode.trainer.seq_kd=true"])  # lmbda 0.5: the student's samples need scores
    assert "mode.trainer.seq_kd=true mode.trainer.lmbda=0" in problem.fix
