"""The single-node SLURM cluster itself, driven through submitit as Forge's launcher drives it:
results come back, arrays run side by side, sacct sees the outcome, a cancelled job ends the wait with an
error instead of hanging, and a signalled checkpointable job is requeued and resumes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

pytestmark = pytest.mark.slurm

# The jobs below are this module's functions: ship them by value, so the job's Python does not need to
# import `tests.slurm.test_cluster` (its working directory and sys.path are not pytest's).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _executor(cluster, folder: Path, **extra) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(
        slurm_partition=cluster.partition, cpus_per_task=1, slurm_mem="1000MB", timeout_min=5, **extra
    )
    return executor


def _sacct_state(cluster, job_id: str, want: str, timeout_s: float = 30) -> str:
    """State sacct reports for the job (allocation line), polling until it is `want` or time is up."""
    deadline = time.time() + timeout_s
    state = ""
    while time.time() < deadline:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id.split("_")[0]],
            env=cluster.env, capture_output=True, text=True, timeout=20,
        ).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        state = states.get(job_id, "")
        if state.startswith(want):
            break
        time.sleep(0.5)
    return state


def _wait_running(cluster, job_id: str, timeout_s: float = 30) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=cluster.env,
                             capture_output=True, text=True, timeout=20).stdout.strip()
        if out == "RUNNING":
            return
        time.sleep(0.2)
    pytest.fail(f"job {job_id} not RUNNING after {timeout_s}s")


def where_am_i(x: int) -> dict:
    return {"twice": 2 * x, "job": os.environ.get("SLURM_JOB_ID"), "conf": os.environ.get("SLURM_CONF")}


def timed_square(x: int) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(3)
    return x * x, start, time.time()


def test_job_returns_its_value_and_sacct_says_completed(slurm_cluster, tmp_path):
    job = _executor(slurm_cluster, tmp_path / "submitit").submit(where_am_i, 21)
    result = job.result()
    assert result == {"twice": 42, "job": job.job_id, "conf": slurm_cluster.slurm_conf}
    assert _sacct_state(slurm_cluster, job.job_id, "COMPLETED") == "COMPLETED"


def test_array_of_three_runs_two_at_a_time(slurm_cluster, tmp_path):
    jobs = _executor(slurm_cluster, tmp_path / "submitit").map_array(timed_square, [1, 2, 3])
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1  # one SLURM array
    results = [job.result() for job in jobs]
    assert [r[0] for r in results] == [1, 4, 9]
    spans = sorted((start, end) for _, start, end in results)
    assert spans[1][0] < spans[0][1], f"no two 1-CPU tasks overlapped on this node: {spans}"
    for job in jobs:
        assert _sacct_state(slurm_cluster, job.job_id, "COMPLETED") == "COMPLETED"


def test_cancelled_job_raises_instead_of_hanging(slurm_cluster, tmp_path):
    job = _executor(slurm_cluster, tmp_path / "submitit").submit(time.sleep, 300)
    _wait_running(slurm_cluster, job.job_id)
    start = time.time()
    subprocess.run(["scancel", job.job_id], env=slurm_cluster.env, check=True, timeout=20)
    with pytest.raises(UncompletedJobError) as info:
        job.result()
    elapsed = time.time() - start
    # No result pickle: submitit learns from sacct that the job is over (not FailedJobError, which means
    # the job itself raised).
    assert not isinstance(info.value, FailedJobError)
    assert "CANCELLED" in str(info.value)
    assert elapsed < 60, f"job.result() took {elapsed:.0f}s to notice the cancellation"


class Resumable(submitit.helpers.Checkpointable):
    """First run: writes a marker and waits for submitit's requeue signal. Requeued run: reads it back."""

    def __call__(self, workdir: str) -> dict:
        marker = Path(workdir) / "first-run.txt"
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts is None:
            marker.write_text(f"{os.getpid()} {time.time()}")
            time.sleep(120)
            return {"restarts": None}
        return {"restarts": restarts, "first_run": marker.read_text(), "started": time.time()}


def test_usr2_checkpoints_requeues_and_restarts_quickly(slurm_cluster, tmp_path):
    job = _executor(slurm_cluster, tmp_path / "submitit").submit(Resumable(), str(tmp_path))
    marker = tmp_path / "first-run.txt"
    deadline = time.time() + 30
    while not marker.exists():
        assert time.time() < deadline, "first run never started"
        time.sleep(0.2)
    sent = time.time()
    # What SLURM does signal_delay_s before the time limit: the signal to the job's steps (srun), not to
    # the batch shell (--batch would kill the shell and fail the job).
    subprocess.run(["scancel", "--signal=USR2", job.job_id], env=slurm_cluster.env, check=True, timeout=20)
    result = job.result()
    assert result["restarts"] == "1"
    assert result["first_run"] == marker.read_text()
    assert result["started"] - sent < 15, f"requeued job restarted {result['started'] - sent:.1f}s after USR2"
    assert _sacct_state(slurm_cluster, job.job_id, "COMPLETED") == "COMPLETED"
