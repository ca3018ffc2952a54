"""Real runs of every mode on synthetic pages with the offline Qwen3-VL pair (model=tiny_vlm),
through `forge.run`. Where a teacher is the student itself, its divergence must start at zero: that
is only true when the pixels reach both sides of every forward pass (student sampling and scoring,
the teacher's backend, TRL's reference and loss passes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.integration.stopping import stop_then_resume

pytestmark = pytest.mark.integration

VLM_TINY = [
    "task=ocr_synth", "model=tiny_vlm", "logger=none", "task.num_train=4", "task.num_validation=2",
    "task.page.width=192", "task.page.height=256", "task.page.margin=12", "task.page.font_size=11",
    "task.page.blocks=2", "task.max_pixels=50176", "task.max_length=320", "task.max_new_tokens=8",
    "trainer.max_steps=2", "trainer.per_device_train_batch_size=2", "trainer.per_device_eval_batch_size=2",
    "trainer.logging_steps=1", "trainer.save_steps=1", "trainer.learning_rate=1e-3",
]
STUDENT_AS_TEACHER = "model.teacher.name_or_path=tiny-qwen3vl-student"


def run(run_dir: Path, *extra: str) -> dict:
    import forge

    return forge.run(compose_config([*VLM_TINY, f"run_dir={run_dir}", *extra]))


def logged(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    return [e for e in history if "loss" in e]


def test_sft_then_its_final_model_scored_by_mode_eval(tmp_path):
    trained = run(tmp_path / "sft", "mode=sft")
    assert [e["loss/ce"] for e in logged(tmp_path / "sft")][0] > 0
    final = tmp_path / "sft" / "final"
    assert (final / "model.safetensors").is_file() and (final / "processor_config.json").is_file()
    scored = run(tmp_path / "eval", "mode=eval", "model.student.source=local", f"model.student.name_or_path={final}")
    assert scored["post"]["student"] == trained["post"]["student"]  # the saved model scores what the run reported
    assert scored["pre"] == scored["post"] and scored["train"] == {"global_step": 0}
    assert not (tmp_path / "eval" / "final").exists()
    meta = json.loads((tmp_path / "eval" / "run_metadata.json").read_text())
    assert meta["status"] == "finished"


def test_kd_with_feature_attention_and_response_losses_on_pages(tmp_path):
    run(tmp_path / "run", "mode=kd", "loss=combined_far", "teacher_strategy=frozen_base")
    first = logged(tmp_path / "run")[0]
    for part in ("loss/feature", "loss/attention", "loss/response", "loss/ce"):
        assert first[part] > 0, part


def test_gkd_on_policy_against_itself_starts_at_zero_divergence(tmp_path):
    run(tmp_path / "run", "mode=gkd", "mode.trainer.lmbda=1.0", "mode.trainer.max_new_tokens=6",
        "teacher_strategy=frozen_base", STUDENT_AS_TEACHER, "trainer.max_steps=1")
    first = logged(tmp_path / "run")[0]
    assert first["loss/on_policy"] == 1.0 and first["loss/completion_tokens"] > 0
    assert abs(first["loss/jsd"]) < 1e-6


@pytest.mark.parametrize("kl_to", ["reference", "teacher"])
def test_grpo_on_pages_starts_with_zero_kl(tmp_path, kl_to):
    extra = [STUDENT_AS_TEACHER] if kl_to == "teacher" else []
    run(tmp_path / "run", "mode=rl", "reward=edit_similarity", "rl.num_generations=2", "rl.max_completion_length=6",
        "rl.beta=0.04", f"rl.kl_to={kl_to}", "trainer.max_steps=1", *extra)
    first = [e for e in logged(tmp_path / "run") if "reward" in e][0]
    assert abs(first["kl"]) < 1e-6
    assert 0.0 <= first["rewards/edit_similarity/mean"] <= 1.0


def test_a_server_teacher_that_takes_no_images_is_refused(tmp_path):
    from forge.config.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        run(tmp_path / "run", "mode=gkd", "teacher_backend=openai", "mode.trainer.top_k=5",
            "teacher_strategy=frozen_base")
    assert "teacher_backend" in str(err.value) and "page images" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_stopped_page_run_resumes_to_the_uninterrupted_run(tmp_path):
    config = ["mode=kd", "loss=combined_r", "teacher_strategy=frozen_base", "trainer.max_steps=4", "trainer.save_steps=2"]
    expected = run(tmp_path / "uninterrupted", *config)
    stopped = tmp_path / "stopped"
    resumed = stop_then_resume(run, stopped, *config)
    assert [e["loss"] for e in logged(stopped)][-2:] == [e["loss"] for e in logged(tmp_path / "uninterrupted")][-2:]
    assert resumed["post"] == expected["post"]


def test_sequence_level_kd_from_tesseract(tmp_path):
    """A teacher that only generates (an OCR engine): the student trains by cross-entropy on the
    text Tesseract reads from each page."""
    pytest.importorskip("pytesseract")
    run(tmp_path / "run", "mode=gkd", "teacher_backend=tesseract", "mode.trainer.seq_kd=true", "mode.trainer.lmbda=0",
        "mode.trainer.max_new_tokens=12", "trainer.max_steps=1")
    first = logged(tmp_path / "run")[0]
    assert first["loss/on_policy"] == 0.0 and first["loss/completion_tokens"] > 1
    assert first["loss/ce_teacher_text"] > 0 and "loss/jsd" not in first
    meta = json.loads((tmp_path / "run" / "run_metadata.json").read_text())
    assert meta["teacher"]["kind"] == "served" and "tesseract" in json.dumps(meta["teacher"])


def test_gkd_with_the_teacher_seeing_pages_at_a_higher_resolution(tmp_path):
    """The same weights reading the page at 3x the student's pixels (the 192x256 page itself; the
    student's is scaled down) give a non-zero divergence: the teacher's own view reaches its backend."""
    run(tmp_path / "run", "mode=gkd", "mode.trainer.lmbda=0", "teacher_strategy=frozen_base", STUDENT_AS_TEACHER,
        "task.max_pixels=16384", "task.teacher_max_pixels=200704", "trainer.max_steps=1")
    first = logged(tmp_path / "run")[0]
    assert first["loss/on_policy"] == 0.0 and first["loss/jsd"] > 1e-6


def test_kd_runs_on_pages_share_one_fine_tuned_teacher_keyed_by_the_pixels(tmp_path):
    """Page tasks refuse the signal cache, yet a frozen_sft teacher is fine-tuned once per recipe:
    another arm reuses it (same weights, so the same teacher scores), and pages whose text and
    prompt ids are the same but whose pixels differ (blur) get a teacher of their own."""
    shared = ["mode=kd", "loss=combined_r", "teacher_strategy=frozen_sft", "teacher_strategy.finetune_steps=2",
              "teacher_strategy.finetune_batch_size=2", "trainer.max_steps=1", f"teacher.cache_root={tmp_path / 'cache'}"]
    first, second = run(tmp_path / "a", *shared), run(tmp_path / "b", *shared, "loss=combined_far")
    blurred = run(tmp_path / "c", *shared, "task.page.blur_radius=1.5")
    meta = {name: json.loads((tmp_path / name / "run_metadata.json").read_text()) for name in "abc"}
    teachers = {name: m["teacher"] for name, m in meta.items()}
    assert teachers["a"]["kind"] == "finetuned" and teachers["a"]["teacher_finetune"] == "done now"
    assert teachers["b"]["teacher_finetune"] == "reused" and teachers["b"]["teacher_dir"] == teachers["a"]["teacher_dir"]
    assert teachers["c"]["teacher_finetune"] == "done now" and teachers["c"]["teacher_dir"] != teachers["a"]["teacher_dir"]
    assert "page images" in meta["a"]["teacher_cache"]["reason"]  # the signals themselves are not cached
    assert second["pre"]["teacher"] == first["pre"]["teacher"]
    weights = {name: json.loads((Path(t["teacher_dir"]) / "forge_teacher.json").read_text())["weights_sha256"]
               for name, t in teachers.items()}
    assert weights["a"] == weights["b"] != weights["c"]
    assert meta["c"]["teacher"]["teacher_finetune_s"] > 0 and blurred["pre"]["teacher"] is not None
    for name in "abc":
        assert not (tmp_path / name / "teacher_sft").exists()
