"""Jobs with several ranks: `torchrun --nproc_per_node=2 launch.py ...` (gloo on CPU) is ONE run.

Each case runs the real command line. A 2-rank run with per-device batch B is compared with a
1-rank run with batch 2B (the same global batch): dropout is off in both (`config_overrides`), so
the only difference left is the order of floating-point sums in DDP's gradient all-reduce, and the
losses of every step and the final metrics agree to that noise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.slow

NO_DROPOUT = "{hidden_dropout_prob:0.0,attention_probs_dropout_prob:0.0}"
DEMO = [
    "task=demo", "model=minilm", "logger=none", "task.max_train_samples=32", "task.max_eval_samples=16",
    "task.max_length=32", "trainer.max_steps=4", "trainer.logging_steps=1", "trainer.save_steps=2",
    "trainer.learning_rate=1e-3", "trainer.per_device_eval_batch_size=16", "teacher_strategy.finetune_steps=2",
    f"model.student.config_overrides={NO_DROPOUT}", f"model.teacher.config_overrides={NO_DROPOUT}",
]
EUROPARL = [
    "task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "logger=none",
    "task.max_train_samples=8", "task.max_eval_samples=2", "task.max_length=48", "task.max_new_tokens=4",
    "task.system_prompt=Translate.", "trainer.max_steps=2", "trainer.logging_steps=1", "trainer.save_steps=2",
    "trainer.learning_rate=1e-4", "trainer.per_device_eval_batch_size=2",
]
RUN_FILES = {"config.yaml", "run_metadata.json", "output.log", "pre_metrics.json", "training_state.json",
             "metrics.json"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
            "FORGE_TEACHER_CACHE_DIR": str(cache), **extra}


def _command(ranks: int, run_dir: Path, overrides: list[str]) -> list[str]:
    launch = [str(REPO_ROOT / "launch.py"), *overrides, f"run_dir={run_dir}"]
    if ranks == 1:
        return [sys.executable, *launch]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
            f"--master_port={_free_port()}", *launch]


def launch(ranks: int, run_dir: Path, overrides: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(ranks, run_dir, overrides), cwd=run_dir.parent, capture_output=True, text=True,
                          timeout=900, env=_env(cache, **env))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


def step_losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read(run_dir, "training_state.json")["log_history"] if "loss" in e}


def assert_one_complete_run(run_dir: Path, steps: int) -> dict:
    """One run directory, one of each file, written by one process, two ranks' RNG in each checkpoint."""
    meta = read(run_dir, "run_metadata.json")
    assert meta["status"] == "finished" and len(meta["attempts"]) == 1
    assert meta["ranks"] == {"world_size": 2, "strategy": "ddp"}
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    assert not list(run_dir.parent.glob(f"{run_dir.name}_*"))  # no second run directory next to it
    assert (run_dir / "final" / "model.safetensors").is_file()
    last = run_dir / f"checkpoint-{steps}"
    assert {"rng_state_0.pth", "rng_state_1.pth", "forge_checkpoint.json"} <= {p.name for p in last.iterdir()}
    log = (run_dir / "output.log").read_text()
    assert log.count("Results") == 1 and log.count("Pre-training metrics") == 1  # rank 0 speaks for the run
    assert all("[rank 1]" in line for line in log.splitlines() if "rank 1" in line)
    return read(run_dir, "metrics.json")


def assert_same_training(one: Path, two: Path) -> None:
    ones, twos = step_losses(one), step_losses(two)
    assert sorted(ones) == sorted(twos) and ones
    for step in ones:
        assert twos[step] == pytest.approx(ones[step], rel=1e-4, abs=1e-5), (step, ones, twos)
    m1, m2 = read(one, "metrics.json"), read(two, "metrics.json")
    for side in ("pre", "post"):
        for who, scores in m1[side].items():
            for key, value in scores.items():
                assert m2[side][who][key] == pytest.approx(value, abs=1e-6), (side, who, key)


def test_two_ranks_kd_with_a_cold_cache_is_one_run_that_matches_one_rank(tmp_path):
    kd = [*DEMO, "mode=kd", "loss=combined_r", "teacher_strategy=frozen_sft"]
    two = tmp_path / "two"
    # every cache cold, the packaged models' conversions included: rank 0 builds, rank 1 waits and reads
    launch(2, two, [*kd, "trainer.per_device_train_batch_size=4", "teacher_strategy.finetune_batch_size=4"],
           tmp_path / "cache2", FORGE_CACHE_DIR=str(tmp_path / "converted"))
    metrics = assert_one_complete_run(two, steps=4)
    assert metrics["train"]["global_step"] == 4
    meta = read(two, "run_metadata.json")
    assert meta["teacher"]["kind"] == "cached" and meta["teacher_cache"]["built"] == ["logits"]
    # built once: one shared fine-tuned teacher, one build of the signals in the store's history
    (teacher_dir,) = [p for p in (tmp_path / "cache2" / "teachers").iterdir() if not p.name.startswith(".")]
    assert (teacher_dir / "forge_checkpoint.json").is_file()
    (store,) = list((tmp_path / "cache2" / "signals").iterdir())
    builds = json.loads((store / "manifest.json").read_text())["builds"]
    assert len(builds) == 1 and builds[0]["entries"] == ["logits"]
    converted = [p.name for p in (tmp_path / "converted" / "packaged").iterdir()]
    # one conversion directory, nothing left of a second one (the name: packaged._converted_dir)
    assert len(converted) == 1 and converted[0].startswith("paraphrase-MiniLM-L3-v2-b388816f4fe4becc-"), converted
    one = tmp_path / "one"
    launch(1, one, [*kd, "trainer.per_device_train_batch_size=8", "teacher_strategy.finetune_batch_size=8"],
           tmp_path / "cache1")
    assert_same_training(one, two)


def test_two_ranks_sft_matches_one_rank_with_one_wandb_run(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    launch(2, two, [*DEMO, "mode=sft", "trainer.per_device_train_batch_size=4", "logger=wandb"], tmp_path / "cache")
    assert_one_complete_run(two, steps=4)
    assert len(list((two / "wandb").glob("offline-run-*"))) == 1 and (two / "wandb_run_id").is_file()
    launch(1, one, [*DEMO, "mode=sft", "trainer.per_device_train_batch_size=8"], tmp_path / "cache")
    assert_same_training(one, two)


def test_two_ranks_gkd_off_policy_matches_one_rank(tmp_path):
    """GKD's loss is a per-sequence mean (batchmean), so equal per-rank batches average exactly."""
    gkd = [*EUROPARL, "mode=gkd", "mode.trainer.lmbda=0.0"]
    two, one = tmp_path / "two", tmp_path / "one"
    launch(2, two, [*gkd, "trainer.per_device_train_batch_size=2"], tmp_path / "cache")
    assert_one_complete_run(two, steps=2)
    launch(1, one, [*gkd, "trainer.per_device_train_batch_size=4"], tmp_path / "cache")
    assert_same_training(one, two)
    # on-policy over two ranks: every step samples (the coin is the same on both ranks)
    on_policy = tmp_path / "on_policy"
    launch(2, on_policy, [*EUROPARL, "mode=gkd", "mode.trainer.lmbda=1.0", "mode.trainer.max_new_tokens=4",
                          "trainer.per_device_train_batch_size=2"], tmp_path / "cache")
    assert_one_complete_run(on_policy, steps=2)
    history = read(on_policy, "training_state.json")["log_history"]
    assert [e["loss/on_policy"] for e in history if "loss" in e] == [1.0, 1.0]


def _worker_pid(launcher: subprocess.Popen, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker with RANK=rank (read from /proc/<pid>/environ)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        for pid in children:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no worker with RANK={rank}")


def test_a_signal_to_one_rank_stops_both_at_the_same_step_and_resume_matches(tmp_path):
    """KD with the live teacher (no cache): the frozen teacher replicated on both ranks."""
    overrides = [*DEMO, "mode=kd", "loss=combined_fa", "teacher_strategy=frozen_base", "teacher.cache=off",
                 "trainer.per_device_train_batch_size=4", "trainer.max_steps=8", "trainer.save_steps=4",
                 "signals.on_signal=exit"]
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    proc = subprocess.Popen(_command(2, stopped, overrides), cwd=tmp_path, env=_env(tmp_path / "cache"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        rank1 = _worker_pid(proc, 1)
        deadline = time.time() + 600
        log = stopped / "output.log"
        while not (log.is_file() and "step 2/8: loss=" in log.read_text(errors="replace")):
            assert time.time() < deadline and proc.poll() is None, "the run never reached step 2"
            time.sleep(0.1)
        os.kill(rank1, signal.SIGUSR1)  # to rank 1 alone
        proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = read(stopped, "training_state.json")
    meta = read(stopped, "run_metadata.json")
    assert meta["status"] == "interrupted" and "SIGUSR1" in meta["interrupted_by"]
    step = state["global_step"]
    assert 2 <= step < 8 and state["last_checkpoint"] == f"checkpoint-{step}"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (stopped / f"checkpoint-{step}").iterdir()}
    assert "received by another rank" in log.read_text()  # rank 0 stopped because rank 1 was signalled
    launch(2, stopped, overrides, tmp_path / "cache")  # resume: the same command
    straight = tmp_path / "straight"
    launch(2, straight, overrides, tmp_path / "cache")
    assert read(stopped, "run_metadata.json")["status"] == "finished"
    assert step_losses(stopped) == pytest.approx(step_losses(straight), rel=1e-6)
    assert read(stopped, "metrics.json")["post"] == read(straight, "metrics.json")["post"]
