"""Tiny real runs: real packaged weights, real data, a few optimizer steps, a complete run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

PROBE = "bert.encoder.layer.0.attention.self.query.weight"


def _source_weights() -> dict[str, torch.Tensor]:
    """The student's starting weights (packaged paraphrase-MiniLM-L3-v2)."""
    from forge.models.loading import model_dir_or_id

    from omegaconf import OmegaConf

    spec = OmegaConf.create({"source": "packaged", "name_or_path": "paraphrase-MiniLM-L3-v2",
                             "init_layers": None, "revision": None,
                             "lora": {"enabled": False, "r": 8, "alpha": 16, "dropout": 0.0,
                                      "target_modules": ["query"]}})
    return load_file(str(Path(model_dir_or_id(spec)) / "model.safetensors"))


def _assert_complete_run_dir(run_dir: Path, expected_steps: int) -> None:
    from transformers import AutoModelForSequenceClassification

    for name in ("config.yaml", "run_metadata.json", "output.log", "training_state.json", "metrics.json"):
        assert (run_dir / name).is_file(), f"{name} missing in {run_dir}"
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    assert meta["status"] == "finished"
    assert meta["seed"] == 42 and meta["end_time"] and meta["packages"]["torch"]
    state = json.loads((run_dir / "training_state.json").read_text())
    assert state["global_step"] == expected_steps
    assert any(name.startswith("checkpoint-") for name in (p.name for p in run_dir.iterdir()))
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "final")
    assert model.config.num_labels == 2
    assert "Results" in (run_dir / "output.log").read_text()


def _final_student_changed(run_dir: Path) -> None:
    final = load_file(str(run_dir / "final" / "model.safetensors"))
    source = _source_weights()
    key = PROBE if PROBE in source else next(k for k in source if k.endswith("layer.0.attention.self.query.weight"))
    assert not torch.allclose(final[PROBE], source[key]), "student encoder weights did not change"


def _run_dir(cfg, metrics) -> Path:
    base = Path(cfg.output_root) / cfg.task.name / cfg.model.name / cfg.mode.name / cfg.loss.name
    (only,) = list(base.iterdir())
    return only


def test_sft_run_trains_and_leaves_complete_run_dir(tiny_run):
    cfg, metrics = tiny_run("mode=sft")
    run_dir = _run_dir(cfg, metrics)
    _assert_complete_run_dir(run_dir, expected_steps=3)
    _final_student_changed(run_dir)
    assert "teacher" not in metrics["pre"]
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    assert any("loss/ce" in entry for entry in history)


@pytest.mark.parametrize(
    ("loss", "strategy", "components"),
    [
        ("response_kl", "frozen_sft", {"response"}),
        ("feature_mse", "frozen_base", {"feature"}),
        ("attention_kl", "cotrain_base", {"attention"}),
        ("combined_far", "frozen_sft", {"feature", "attention", "response"}),
        ("staged_far", "cotrain_sft", {"feature", "attention", "response"}),
    ],
)
def test_kd_run_per_loss_family(tiny_run, loss, strategy, components):
    cfg, metrics = tiny_run("mode=kd", f"loss={loss}", f"teacher_strategy={strategy}")
    run_dir = _run_dir(cfg, metrics)
    _assert_complete_run_dir(run_dir, expected_steps=3)
    _final_student_changed(run_dir)
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    logged = {key.split("/", 1)[1] for entry in history for key in entry if key.startswith("loss/")}
    assert {"ce", "distill"} | components <= logged, logged
    gap = metrics["transfer_gap"]
    assert gap["student_gain"] == pytest.approx(gap["student_post"] - gap["student_pre"])
    assert gap["teacher_advantage"] == pytest.approx(gap["teacher_post"] - gap["student_pre"])
    if strategy.startswith("frozen"):
        assert metrics["pre"]["teacher"] == metrics["post"]["teacher"], "a frozen teacher must not change"
    if strategy == "cotrain_sft":  # co-trained: fine-tuned in the run (the cache refuses it)
        assert (run_dir / "teacher_sft" / "config.json").is_file()
    if strategy == "frozen_sft":  # frozen: fine-tuned once into the shared teacher store
        cache = json.loads((run_dir / "run_metadata.json").read_text())["teacher_cache"]
        assert (Path(cache["teacher_dir"]) / "config.json").is_file() and cache["size_bytes"] > 0
    if "feature" in components:
        assert (run_dir / "final" / "forge_loss_projections.safetensors").is_file()
