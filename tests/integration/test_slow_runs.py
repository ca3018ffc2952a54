"""Slow tier: the README's demo and a real SST-2 distillation, through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.slow


def _launch(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    out_root = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "launch.py"), f"output_root={out_root}", *overrides],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (metrics_file,) = list(out_root.rglob("metrics.json"))
    return proc, metrics_file.parent


def test_demo_experiment_end_to_end(tmp_path):
    proc, run_dir = _launch(tmp_path, "experiment=demo")
    assert "transfer gap on validation/accuracy" in proc.stdout
    assert run_dir.relative_to(tmp_path / "outputs").parts[:4] == ("demo", "minilm", "kd", "combined_far")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    gap = metrics["transfer_gap"]
    # The demo must actually teach the student something and the teacher must be worth distilling.
    assert gap["student_post"] > gap["student_pre"] + 0.15
    assert gap["teacher_post"] >= 0.85
    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    assert {p.name for p in run_dir.glob("checkpoint-*")} == {"checkpoint-75", "checkpoint-150"}


def test_sst2_kd_from_shared_data(tmp_path):
    data_dir = SHARED_DATA / "glue" / "SST-2"
    if not data_dir.is_dir():
        pytest.skip(f"{data_dir} not present")
    _, run_dir = _launch(
        tmp_path, "task=sst2", f"task.data_dir={data_dir}", "model=minilm", "mode=kd", "loss=combined_far",
        "task.max_train_samples=2000", "task.max_length=64", "trainer.max_steps=60",
        "teacher_strategy.finetune_steps=60", "trainer.learning_rate=1e-4",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["primary_metric"] == "validation/accuracy"
    post = metrics["post"]["student"]["validation/accuracy"]
    assert post > 0.6, metrics  # 872 real dev sentences; chance is 0.51
    assert metrics["train"]["global_step"] == 60
