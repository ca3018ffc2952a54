"""Runs that survive: signals save and stop, relaunching resumes to the same result, kill -9 never
leaves a loadable broken checkpoint, NaN stops cleanly, secrets stay out of the run directory.

Every case drives the real command line (`launch.py`) in a subprocess and sends real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forge.runtime.checkpoints import checkpoint_dirs, verify
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

SECRETS = {"WANDB_API_KEY": "wandb-key-must-not-leak-0123456789", "HF_TOKEN": "hf_tokenmustnotleak987654321"}
# Staged FAR loss + co-trained teacher: the checkpoint must hold student, projections, teacher,
# optimizer, scheduler, RNG, data position and the schedule step for an exact resume.
RUN = [
    "task=demo", "model=minilm", "mode=kd", "loss=staged_far", "teacher_strategy=cotrain_sft",
    "loss.phases.0.until_step=6", "task.max_train_samples=64", "task.max_eval_samples=16", "task.max_length=32",
    "trainer.max_steps=12", "trainer.per_device_train_batch_size=8", "trainer.per_device_eval_batch_size=16",
    "trainer.logging_steps=1", "trainer.save_steps=4", "trainer.eval_steps=4", "trainer.learning_rate=1e-3",
    "teacher_strategy.finetune_steps=2", "teacher_strategy.finetune_batch_size=8",
]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **SECRETS, **extra}


def _command(run_dir: Path, *extra: str, base: list[str] = RUN) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "launch.py"), *base, f"run_dir={run_dir}", *extra]


def launch(run_dir: Path, *extra: str, base: list[str] = RUN) -> subprocess.CompletedProcess:
    return subprocess.run(_command(run_dir, *extra, base=base), cwd=run_dir.parent, capture_output=True,
                          text=True, timeout=600, env=_env())


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    log = open(run_dir.parent / f"{run_dir.name}.console", "ab")
    return subprocess.Popen(_command(run_dir, *extra), cwd=run_dir.parent, stdout=log, stderr=subprocess.STDOUT,
                            env=_env())


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting for the run")


def logged_step(run_dir: Path, step: int) -> bool:
    log = run_dir / "output.log"
    return log.is_file() and f"step {step}/12: loss=" in log.read_text(errors="replace")


def read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


def step_losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read(run_dir, "training_state.json")["log_history"] if "loss" in e}


def test_signal_saves_stops_and_resume_matches_the_uninterrupted_run(tmp_path):
    reference = tmp_path / "uninterrupted"
    done = launch(reference)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "interrupted"
    run_dir.mkdir()
    proc = start(run_dir)
    wait_for(lambda: logged_step(run_dir, 5), proc)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=120) == 75  # signals.exit_code: stopped after saving, not finished
    meta = read(run_dir, "run_metadata.json")
    assert meta["status"] == "interrupted" and "SIGUSR1" in meta["interrupted_by"]
    state = read(run_dir, "training_state.json")
    stopped = state["global_step"]
    assert state["status"] == "interrupted" and 5 <= stopped < 12
    assert state["last_checkpoint"] == f"checkpoint-{stopped}" and verify(run_dir / f"checkpoint-{stopped}").ok
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "final").exists()
    wandb_id = (run_dir / "wandb_run_id").read_text().strip()

    resumed = launch(run_dir)  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log_text = (run_dir / "output.log").read_text()
    assert f"Resuming from {run_dir / f'checkpoint-{stopped}'}" in log_text
    assert "Reusing the teacher this run fine-tuned before" in log_text

    ref, res = read(reference, "metrics.json"), read(run_dir, "metrics.json")
    assert res["train"]["global_step"] == ref["train"]["global_step"] == 12
    # Same seed on CPU: every step's loss and every final metric agree to float precision.
    ref_losses, res_losses = step_losses(reference), step_losses(run_dir)
    assert sorted(res_losses) == list(range(1, 13))
    for step, loss in ref_losses.items():
        assert res_losses[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), f"step {step}"
    for who in ("student", "teacher"):
        for key, value in ref["post"][who].items():
            assert res["post"][who][key] == pytest.approx(value, abs=1e-6)
    assert res["train"]["train_loss"] == pytest.approx(ref["train"]["train_loss"], rel=1e-5)
    # The peak tracker (eval every 4 steps) survived the resume.
    assert res["peak"]["best_step"] == ref["peak"]["best_step"] is not None
    assert res["peak"]["best_value"] == pytest.approx(ref["peak"]["best_value"])
    assert res["peak"]["evaluations"] == ref["peak"]["evaluations"] == 3

    meta = read(run_dir, "run_metadata.json")
    assert meta["status"] == "finished"
    assert [a["status"] for a in meta["attempts"]] == ["interrupted", "finished"]
    assert meta["attempts"][1]["resumed_from"].endswith(f"checkpoint-{stopped}")
    assert read(run_dir, "training_state.json")["resumes"][0]["from_checkpoint"] == f"checkpoint-{stopped}"

    # One W&B run across the preemption: the same id, two offline segments, every step logged.
    from tests.wandb_reader import read_run

    assert (run_dir / "wandb_run_id").read_text().strip() == wandb_id
    wb = read_run(run_dir)
    assert wb.run_ids == [wandb_id] and len(wb.segments) == 2
    steps_logged = {row.get("_step") for row in wb.history if "loss" in row}
    assert set(range(1, 13)) <= steps_logged
    assert any("loss/response" in row for row in wb.history)
    assert wb.summary.get("transfer_gap/student_gain") == pytest.approx(res["transfer_gap"]["student_gain"])

    # Relaunching a finished run does nothing and changes nothing.
    before = (run_dir / "metrics.json").read_bytes()
    again = launch(run_dir)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr
    assert (run_dir / "metrics.json").read_bytes() == before

    # No credential from the environment reached any file of either run directory.
    for directory in (reference, run_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for secret in SECRETS.values():
                    assert secret.encode() not in data, f"{secret} leaked into {path}"

    never = launch(run_dir, "resume=never")
    assert never.returncode == 2 and "resume" in never.stderr and "already holds checkpoints" in never.stderr


def test_kill_9_at_any_moment_never_leaves_a_loadable_broken_checkpoint(tmp_path):
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    extra = ("trainer.save_steps=1", "trainer.eval_steps=0")
    # Kill right after a checkpoint appears, in the middle of the next save, and later.
    for delay in (0.0, 0.12, 0.4):
        proc = start(run_dir, *extra)
        target = max([int(p.name.split("-")[1]) for p in checkpoint_dirs(run_dir)], default=0) + 2
        wait_for(lambda: logged_step(run_dir, target), proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        for checkpoint in checkpoint_dirs(run_dir):
            check = verify(checkpoint, "sha256")
            assert check.ok, f"kill -9 after {delay}s left {checkpoint.name}: {check.problem}"
        assert read(run_dir, "run_metadata.json")["status"] == "running"  # never claims to be finished
        assert not (run_dir / "metrics.json").exists()

    # Corrupt the newest checkpoint: resume must skip it, say so, and use the previous one.
    newest, previous = checkpoint_dirs(run_dir)[:2]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    finished = launch(run_dir, *extra)
    assert finished.returncode == 0, finished.stderr[-3000:]
    log_text = (run_dir / "output.log").read_text()
    assert f"Skipping {newest.name}" in log_text and f"Resuming from {previous}" in log_text
    assert read(run_dir, "metrics.json")["train"]["global_step"] == 12
    assert read(run_dir, "run_metadata.json")["status"] == "finished"
    assert sorted(step_losses(run_dir)) == list(range(1, 13))
    kept = [p.name for p in checkpoint_dirs(run_dir)]
    assert kept == ["checkpoint-12", "checkpoint-11"], kept  # trainer.save_total_limit=2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "nan"
    run_dir.mkdir()
    sft = [arg for arg in RUN if not arg.startswith(("mode=", "loss", "teacher_strategy"))]
    proc = launch(run_dir, "mode=sft", "trainer.learning_rate=1e6", "trainer.max_grad_norm=0",
                  "trainer.save_steps=1", "trainer.eval_steps=0", base=sft)
    assert proc.returncode == 1
    assert "training loss became nan" in proc.stderr and "last good checkpoint is" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert read(run_dir, "run_metadata.json")["status"] == "failed"
    good = checkpoint_dirs(run_dir)
    assert good and all(verify(p).ok for p in good)
    assert str(good[0]) in proc.stderr
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "final").exists()
