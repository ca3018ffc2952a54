"""A local sweep (`-m`, the default launcher) runs its jobs one after another, each into its own
run directory under one sweep directory, named by job number, arm and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.integration

TINY_STUDY = [
    "-m", "experiment=far_study", "task=demo", "loss=ce,combined_f", "seed=1", "logger=none",
    "task.max_train_samples=32", "task.max_eval_samples=16", "task.max_length=32",
    "trainer.max_steps=2", "trainer.per_device_train_batch_size=8", "trainer.save_steps=2",
    "trainer.eval_steps=0", "teacher_strategy.finetune_steps=1", "teacher_strategy.finetune_batch_size=8",
]


def test_local_far_sweep_writes_one_run_dir_per_job(tmp_path):
    out = tmp_path / "outputs"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), *TINY_STUDY, f"output_root={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = list((out / "sweeps" / "far_study").iterdir())
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == ["000_ce_seed1", "001_combined_f_seed1"]
    for name in runs:
        run_dir = sweep_dir / name
        meta = json.loads((run_dir / "run_metadata.json").read_text())
        assert meta["status"] == "finished" and meta["seed"] == 1
        assert (run_dir / "final" / "model.safetensors").is_file() and (run_dir / "checkpoint-2").is_dir()
        assert json.loads((run_dir / "metrics.json").read_text())["train"]["global_step"] == 2
    assert (sweep_dir / "multirun.yaml").is_file()
    # Nothing was written outside the sweep directory (no stray timestamped run dirs).
    assert sorted(p.name for p in out.iterdir()) == ["sweeps"]


def test_a_refused_job_does_not_stop_the_sweep_and_the_report_lists_it(tmp_path):
    out = tmp_path / "outputs"
    args = [a for a in TINY_STUDY if not a.startswith(("loss=", "seed="))]
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), *args, "loss=combined_r", "seed=1",
                           "alpha=1.5,0.5", f"output_root={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1  # the sweep reports that a job failed...
    assert "alpha=1.5: must lie in [0, 1]" in proc.stderr
    (sweep_dir,) = list((out / "sweeps" / "far_study").iterdir())
    # ...but the next job ran to the end, and the report (written when the last job ended) lists both
    meta = json.loads((sweep_dir / "001_combined_r_seed1" / "run_metadata.json").read_text())
    assert meta["status"] == "finished"
    report = (sweep_dir / "study.md").read_text()
    assert "`000_combined_r_seed1`" in report and "refused" in report


@pytest.mark.slow
def test_the_gkd_study_names_its_arms_by_beta_and_every_arm_reads_one_store(tmp_path):
    """experiment=gkd_study shrunk to two β arms: run directories and report arms named by the
    settings, one teacher pass into the top-k store for both, the report against gkd_lmbda0_beta0."""
    out, cache = tmp_path / "outputs", tmp_path / "teacher_cache"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "launch.py"), "-m", "experiment=gkd_study",
         f"task.data_dir={SHARED_DATA / 'europarl'}", "mode.trainer.lmbda=0", "mode.trainer.beta=0,1", "seed=1",
         "task.max_train_samples=8", "task.max_eval_samples=2", "task.max_new_tokens=8", "trainer.max_steps=2",
         "trainer.save_steps=2", f"output_root={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "FORGE_TEACHER_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = list((out / "sweeps" / "gkd_study").iterdir())
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == ["000_gkd_lmbda0_beta0_seed1", "001_gkd_lmbda0_beta1_seed1"]
    stores = [json.loads((sweep_dir / name / "run_metadata.json").read_text())["teacher_cache"] for name in runs]
    assert stores[0]["built"] == ["topk_ids", "topk_logprobs"] and stores[1]["reused"] == stores[0]["built"]
    assert stores[0]["dir"] == stores[1]["dir"]
    report = json.loads((sweep_dir / "study.json").read_text())
    assert report["control"] == "gkd_lmbda0_beta0" and not report["problems"]
    assert [arm["arm"] for arm in report["arms"]] == ["gkd_lmbda0_beta0", "gkd_lmbda0_beta1"]
