"""Forge on a real SLURM cluster through submitit (`hydra/launcher=slurm`):

(a) the FAR sweep goes out as ONE array job and every task leaves a finished run directory;
(b) a task signalled with SIGUSR2 (what SLURM sends before a time limit) saves, is requeued by
    submitit, finds its run directory again and completes with the right step count;
(c) a cancelled task makes the sweep fail with a clear error instead of hanging.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slurm

ARMS = ["ce", "combined_f", "combined_a", "combined_r", "combined_fa", "combined_fr", "combined_ar", "combined_far"]
TINY = [
    "task=demo", "task.max_train_samples=32", "task.max_eval_samples=16", "task.max_length=32",
    "trainer.per_device_train_batch_size=8", "trainer.per_device_eval_batch_size=16", "trainer.eval_steps=0",
    "teacher_strategy.finetune_steps=1", "teacher_strategy.finetune_batch_size=8", "trainer.logging_steps=1",
]


def _sweep(cluster, out: Path, *overrides: str) -> list[str]:
    return [
        sys.executable, str(REPO_ROOT / "launch.py"), "-m", "experiment=far_study", "hydra/launcher=slurm",
        f"output_root={out}", f"hydra.launcher.partition={cluster.partition}", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=3", "hydra.launcher.timeout_min=15", "hydra.launcher.array_parallelism=2",
        *TINY, *overrides,
    ]


def _env(cluster) -> dict[str, str]:
    return {**cluster.env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _sweep_dir(out: Path) -> Path:
    (only,) = list((out / "sweeps" / "far_study").iterdir())
    return only


def _array_job_ids(sweep_dir: Path) -> set[str]:
    """Array job ids of the sweep's tasks (submitit names each task's folder `<array id>_<index>`)."""
    return {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}


def _sacct(cluster, job: str) -> list[tuple[str, str]]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job], env=cluster.env,
                         capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split("|")[:2]) for line in out.splitlines() if line.strip()]


def _wait_for_file_text(path_glob, needle: str, proc: subprocess.Popen, timeout: float = 300.0) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in path_glob():
            if path.is_file() and needle in path.read_text(errors="replace"):
                return path
        if proc.poll() is not None:
            raise AssertionError(f"the sweep exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {needle!r}")


def test_far_sweep_is_one_array_job_and_every_task_finishes(slurm_cluster, tmp_path):
    out = tmp_path / "outputs"
    started = time.time()
    proc = subprocess.run(_sweep(slurm_cluster, out, f"loss={','.join(ARMS)}", "seed=1", "trainer.max_steps=2",
                                 "trainer.save_steps=2"),
                          cwd=tmp_path, env=_env(slurm_cluster), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep_dir = _sweep_dir(out)
    (array_id,) = _array_job_ids(sweep_dir)  # one array job for the whole study
    deadline = time.time() + 60  # accounting lags the results by a few seconds
    while True:
        states = _sacct(slurm_cluster, array_id)
        if all(state == "COMPLETED" for _, state in states) or time.time() > deadline:
            break
        time.sleep(1)
    assert len(states) == len(ARMS) and all(state == "COMPLETED" for _, state in states), states
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == [f"{i:03d}_{arm}_seed1" for i, arm in enumerate(ARMS)]
    for name in runs:
        run_dir = sweep_dir / name
        meta = json.loads((run_dir / "run_metadata.json").read_text())
        assert meta["status"] == "finished", (name, meta)
        assert meta["attempts"][0]["slurm_job_id"] and meta["attempts"][0]["slurm_array_task_id"] is not None
        assert json.loads((run_dir / "metrics.json").read_text())["train"]["global_step"] == 2
        assert (run_dir / "final" / "model.safetensors").is_file() and (run_dir / "checkpoint-2").is_dir()
    print(f"\nFAR sweep of {len(ARMS)} arms on SLURM: {time.time() - started:.0f} s")


def test_usr2_saves_requeues_and_resumes_in_the_same_run_dir(slurm_cluster, tmp_path):
    out = tmp_path / "outputs"
    proc = subprocess.Popen(_sweep(slurm_cluster, out, "loss=combined_far", "seed=1", "trainer.max_steps=40",
                                   "trainer.save_steps=5"),
                            cwd=tmp_path, env=_env(slurm_cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        logs = lambda: list((out / "sweeps").glob("far_study/*/000_*/output.log"))  # noqa: E731
        _wait_for_file_text(logs, "step 8/40: loss=", proc)
        sweep_dir = _sweep_dir(out)
        # submitit submits a one-job sweep as a plain job: its folder is `<job id>`.
        (job_id,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
        # What SLURM itself sends `signal_delay_s` before the time limit; to the job step (python).
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_cluster.env, check=True, timeout=30)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-4000:]
    runs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert [p.name for p in runs] == ["000_combined_far_seed1"], "the requeued task must reuse its run directory"
    run_dir = runs[0]
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    attempts = meta["attempts"]
    assert meta["status"] == "finished"
    assert [a["status"] for a in attempts] == ["interrupted", "finished"], attempts
    assert attempts[1]["slurm_restart_count"] == "1"
    assert attempts[1]["resumed_from"] and "checkpoint-" in attempts[1]["resumed_from"]
    resumed_step = int(attempts[1]["resumed_from"].rsplit("-", 1)[1])
    assert resumed_step >= 8
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 40
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    assert sorted({e["step"] for e in history if "loss" in e}) == list(range(1, 41))
    log_text = (run_dir / "output.log").read_text()
    assert "Received SIGUSR2" in log_text and f"Resuming from {run_dir / f'checkpoint-{resumed_step}'}" in log_text


def test_a_cancelled_task_fails_the_sweep_instead_of_hanging(slurm_cluster, tmp_path):
    out = tmp_path / "outputs"
    proc = subprocess.Popen(_sweep(slurm_cluster, out, "loss=ce,combined_f", "seed=1", "trainer.max_steps=2000",
                                   "trainer.save_steps=500", "logger=none"),
                            cwd=tmp_path, env=_env(slurm_cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    job_id = None
    try:
        logs = lambda: list((out / "sweeps").glob("far_study/*/000_*/output.log"))  # noqa: E731
        _wait_for_file_text(logs, "step 2/2000", proc)
        (job_id,) = _array_job_ids(_sweep_dir(out))
        cancelled_at = time.time()
        subprocess.run(["scancel", f"{job_id}_0"], env=slurm_cluster.env, check=True, timeout=30)
        stdout, stderr = proc.communicate(timeout=180)
        waited = time.time() - cancelled_at
    finally:
        if proc.poll() is None:
            proc.kill()
        if job_id:
            subprocess.run(["scancel", job_id], env=slurm_cluster.env, timeout=30)
    assert proc.returncode != 0
    assert "CANCELLED" in stderr and f"{job_id}_0" in stderr, stderr[-3000:]
    assert waited < 120


def test_a_real_time_limit_requeues_until_the_run_completes(slurm_cluster, tmp_path):
    """A 2-minute job: SLURM itself sends SIGUSR2 `signal_delay_s` before the limit, Forge saves,
    submitit requeues; the run continues over as many attempts as it needs.

    SLURM sends the warning up to 60 s early (its event resolution, `man sbatch --signal`). With a
    1-minute limit and a 45 s delay it could land in the first second of an attempt, before submitit
    has installed its handler, and the default action killed the task (CI saw it once). With 2
    minutes and 30 s the warning comes at least 30 s into each attempt and 30 s before the limit
    (here about 90 s in). 1,500 steps take longer than one attempt (about 7 steps/s on 2 cores)."""
    out = tmp_path / "outputs"
    proc = subprocess.run(
        _sweep(slurm_cluster, out, "loss=combined_far", "seed=1", "trainer.max_steps=1500", "trainer.save_steps=50",
               "logger=none", "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30"),
        cwd=tmp_path, env=_env(slurm_cluster), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = [p for p in _sweep_dir(out).iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    statuses = [a["status"] for a in meta["attempts"]]
    assert meta["status"] == "finished" and statuses[-1] == "finished"
    assert len(statuses) >= 2 and set(statuses[:-1]) == {"interrupted"}, statuses
    # SLURM's restart count rises with every attempt. It may skip a number: a requeued job whose
    # warning signal lands before Forge has recorded the attempt is requeued by submitit again.
    restarts = [int(a["slurm_restart_count"] or 0) for a in meta["attempts"]]
    assert restarts == sorted(set(restarts)) and restarts[-1] >= len(statuses) - 1, restarts
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["global_step"] == 1500
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    assert sorted({e["step"] for e in history if "loss" in e}) == list(range(1, 1501))
    print(f"\ntime-limit run finished after {len(statuses)} attempts: {statuses}")


def test_plain_sbatch_job_requeues_itself_and_finds_its_run_dir(slurm_cluster, tmp_path):
    """Without submitit: an sbatch script that execs launch.py (no run_dir given). SIGUSR1 → save →
    `scontrol requeue` by Forge → the requeued job follows `<base>/.slurm-job-<id>` to the same run."""
    out = tmp_path / "outputs"
    args = " ".join([*TINY, "mode=kd", "loss=combined_far", "logger=none", "trainer.max_steps=40",
                     "trainer.save_steps=5", f"output_root={out}"])
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --requeue\n#SBATCH --open-mode=append\n#SBATCH --cpus-per-task=1\n#SBATCH --mem=3G\n"
        f"#SBATCH --output={tmp_path}/slurm-%j.out\n"
        f"cd {tmp_path}\nexec {sys.executable} {REPO_ROOT / 'launch.py'} {args}\n"
    )
    submitted = subprocess.run(["sbatch", "--parsable", f"--partition={slurm_cluster.partition}", str(script)],
                               env=_env(slurm_cluster), capture_output=True, text=True, check=True, timeout=30)
    job_id = submitted.stdout.strip().split(";")[0]
    base = out / "demo" / "minilm" / "kd" / "combined_far"
    try:
        deadline = time.time() + 300
        while not any(p.is_file() and "step 8/40: loss=" in p.read_text(errors="replace")
                      for p in base.glob("*/output.log")):
            assert time.time() < deadline, "the job never reached step 8"
            time.sleep(0.5)
        # --batch: the batch step is the exec'd Python itself.
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=slurm_cluster.env, check=True, timeout=30)
        deadline = time.time() + 300
        while not (list(base.glob("*/metrics.json"))):
            assert time.time() < deadline, "the requeued job did not finish"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job_id], env=slurm_cluster.env, timeout=30)
    runs = [p for p in base.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"a requeue must not start a new timestamped run dir: {runs}"
    assert (base / f".slurm-job-{job_id}").read_text().strip() == str(runs[0].resolve())
    meta = json.loads((runs[0] / "run_metadata.json").read_text())
    assert [a["status"] for a in meta["attempts"]] == ["interrupted", "finished"]
    assert meta["attempts"][1]["slurm_restart_count"] == "1"
    assert json.loads((runs[0] / "metrics.json").read_text())["train"]["global_step"] == 40
    assert "requeued SLURM job" in (tmp_path / f"slurm-{job_id}.out").read_text()
