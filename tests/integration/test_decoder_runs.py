"""Tiny real decoder runs: Europarl EN→FR with the packaged SmolLM2 pair through `forge.run`
(KD with every loss family, GKD on- and off-policy with context baking, LoRA and a top-k teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, compose_config

pytestmark = pytest.mark.integration

DECODER_TINY = [
    "task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "logger=none",
    "task.max_train_samples=16", "task.max_eval_samples=4", "task.max_length=64", "task.max_new_tokens=8",
    "task.system_prompt=Translate.",  # a short system message instead of SmolLM2's 30-token default
    "trainer.max_steps=2", "trainer.per_device_train_batch_size=2", "trainer.per_device_eval_batch_size=4",
    "trainer.logging_steps=1", "trainer.save_steps=1", "trainer.learning_rate=1e-4",
]


def run(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    import forge

    run_dir = tmp_path / "run"
    metrics = forge.run(compose_config([*DECODER_TINY, f"run_dir={run_dir}", *extra]))
    return run_dir, metrics


def logged(run_dir: Path) -> list[dict]:
    return [e for e in json.loads((run_dir / "training_state.json").read_text())["log_history"] if "loss" in e]


def assert_finished_decoder_run(run_dir: Path, metrics: dict) -> None:
    from transformers import AutoModelForCausalLM

    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    assert metrics["primary_metric"] == "validation/bleu" and metrics["train"]["global_step"] == 2
    for who in ("student", "teacher"):
        scores = metrics["post"][who]
        assert 0.0 <= scores["validation/bleu"] <= 100.0 and 0.0 <= scores["validation/chrf"] <= 100.0
    final = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert final.config.num_hidden_layers == 6
    assert not any("lora" in name for name, _ in final.named_parameters())  # adapters merged
    assert (run_dir / "checkpoint-2" / "forge_checkpoint.json").is_file()


def test_gkd_on_policy_with_context_baking_and_lora(tmp_path):
    run_dir, metrics = run(tmp_path, "mode=gkd", "teacher_strategy=context_baking", "mode.trainer.lmbda=1.0",
                           "mode.trainer.max_new_tokens=6", "model.student.lora.enabled=true")
    assert_finished_decoder_run(run_dir, metrics)
    steps = logged(run_dir)
    assert [e["loss/on_policy"] for e in steps] == [1.0, 1.0]  # every batch sampled by the student
    assert all(0 < e["loss/completion_tokens"] <= 6 and e["loss/jsd"] > 0 for e in steps)
    log_text = (run_dir / "output.log").read_text()
    assert "Teacher backend: {'backend': 'hf'" in log_text
    # the teacher saw the context, the student's prompts never did
    config = (run_dir / "config.yaml").read_text()
    assert "Monsieur le Président" in config


def test_gkd_off_policy_seq_kd_with_a_top_k_teacher_view(tmp_path):
    run_dir, metrics = run(tmp_path, "mode=gkd", "mode.trainer.lmbda=0.0", "mode.trainer.seq_kd=true",
                           "mode.trainer.top_k=16", "mode.trainer.max_new_tokens=6", "mode.trainer.beta=0.0")
    assert_finished_decoder_run(run_dir, metrics)
    steps = logged(run_dir)
    assert [e["loss/on_policy"] for e in steps] == [0.0, 0.0]
    assert all(e["loss/completion_tokens"] <= 6 for e in steps)  # teacher generations, capped


def test_kd_with_every_loss_family_on_a_decoder(tmp_path):
    run_dir, metrics = run(tmp_path, "mode=kd", "loss=combined_far", "teacher_strategy=frozen_base")
    assert_finished_decoder_run(run_dir, metrics)
    first = logged(run_dir)[0]
    for component in ("loss/ce", "loss/feature", "loss/attention", "loss/response"):
        assert first[component] > 0, component
