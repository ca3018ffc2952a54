"""One run over two SLURM tasks (`hydra.launcher.tasks_per_node=2`): submitit starts both with srun,
Forge builds the process group from SLURM's variables, and the job is ONE run. A USR2 (what SLURM
sends before a time limit) reaches both tasks: they save one checkpoint at the same step, rank 0
hands over to submitit, the job is requeued, both tasks resume, and the run ends with exactly the
losses and metrics of the same job left alone."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm.test_far_sweep import REPO_ROOT, _env, _wait_for_file_text

pytestmark = pytest.mark.slurm

NO_DROPOUT = "{hidden_dropout_prob:0.0,attention_probs_dropout_prob:0.0}"


def _job(cluster, out: Path) -> list[str]:
    import sys

    return [
        sys.executable, str(REPO_ROOT / "launch.py"), "-m", "hydra/launcher=slurm", f"output_root={out}",
        f"hydra.launcher.partition={cluster.partition}", "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4", "hydra.launcher.timeout_min=15",
        "task=demo", "model=minilm", "mode=kd", "loss=combined_r", "teacher_strategy=frozen_sft", "logger=none",
        "task.max_train_samples=64", "task.max_eval_samples=16", "task.max_length=32", "trainer.max_steps=80",
        "trainer.save_steps=5", "trainer.logging_steps=1", "trainer.per_device_train_batch_size=4",
        "trainer.learning_rate=1e-3", "teacher_strategy.finetune_steps=2", "teacher_strategy.finetune_batch_size=4",
        f"model.student.config_overrides={NO_DROPOUT}", f"model.teacher.config_overrides={NO_DROPOUT}",
    ]


def _run_dir(out: Path) -> Path:
    (sweep,) = list((out / "sweeps" / "sweep").iterdir())
    (run,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


def _losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}


def test_a_two_task_job_stopped_by_usr2_resumes_and_matches_the_job_left_alone(slurm_cluster, tmp_path):
    env = {**_env(slurm_cluster), "FORGE_TEACHER_CACHE_DIR": str(tmp_path / "cache")}
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(_job(slurm_cluster, stopped), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        logs = lambda: list((stopped / "sweeps").glob("sweep/*/000_*/output.log"))  # noqa: E731
        _wait_for_file_text(logs, "step 6/80: loss=", proc, timeout=600)
        sweep = next((stopped / "sweeps" / "sweep").iterdir())
        (job_id,) = [p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_cluster.env, check=True, timeout=30)
        _, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:]
    run_dir = _run_dir(stopped)
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    assert meta["status"] == "finished" and meta["ranks"] == {"world_size": 2, "strategy": "ddp"}
    assert [a["status"] for a in meta["attempts"]] == ["interrupted", "finished"], meta["attempts"]
    resumed = meta["attempts"][1]["resumed_from"]
    assert resumed and "checkpoint-" in resumed
    assert 6 <= int(resumed.rsplit("-", 1)[1]) < 80
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run_dir / "checkpoint-80").iterdir()}

    alone = tmp_path / "alone"
    started = time.time()
    proc = subprocess.run(_job(slurm_cluster, alone), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reference = _run_dir(alone)
    assert _losses(run_dir) == pytest.approx(_losses(reference), rel=1e-6)
    metrics, expected = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference))
    assert metrics["post"] == expected["post"] and metrics["train"]["global_step"] == 80
    print(f"\n2-task SLURM job left alone: {time.time() - started:.0f} s")
