"""`python -m forge.study` on a sweep directory: numbers in study.csv against hand-computed values,
valid PNGs, failed / interrupted / missing runs listed in study.md, exit code 2 on bad paths, the
Hydra callback; and (slow) a real 8-arm x 2-seed sweep through launch.py whose report the callback
writes.

The fast tests build the sweep directory from the files the pipeline writes, with the pipeline's own
writers where they are cheap: config.yaml from the composed far_study config (write_resolved_config),
metrics.json's transfer gap from forge.eval.transfer, run_metadata.json / training_state.json with the
keys RunMetadata and TrainingStateWriter write, and a multirun.yaml as Hydra's sweeper saves it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from forge.eval.transfer import transfer_gap
from forge.runtime.rundir import write_json_atomic, write_resolved_config
from forge.study.grid import BASIC_SWEEPER
from forge.study.hydra_callback import StudyReportCallback
from tests.conftest import REPO_ROOT, compose_config

pytestmark = pytest.mark.integration

ARMS = ["ce", "combined_f", "combined_a", "combined_r", "combined_fa", "combined_fr", "combined_ar", "combined_far"]
SEEDS = [1, 2, 3]
KEY = "validation/accuracy"
STUDENT_PRE, TEACHER = 0.5, 0.9
# Post-training accuracy of the student per arm and seed. None: the job has a run dir that failed
# (combined_f seed 2) or was interrupted (combined_ar seed 2); combined_far seed 3 never started.
VALUES = {
    "ce":           {1: 0.800, 2: 0.820, 3: 0.790},
    "combined_f":   {1: 0.830, 2: None, 3: 0.800},
    "combined_a":   {1: 0.810, 2: 0.815, 3: 0.800},
    "combined_r":   {1: 0.850, 2: 0.860, 3: 0.840},
    "combined_fa":  {1: 0.840, 2: 0.830, 3: 0.820},
    "combined_fr":  {1: 0.870, 2: 0.880, 3: 0.860},
    "combined_ar":  {1: 0.850, 2: None, 3: 0.860},
    "combined_far": {1: 0.890, 2: 0.900},
}
FAILED = ("004_combined_f_seed2", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
INTERRUPTED = "019_combined_ar_seed2"
MISSING = "023_combined_far_seed3"


def _meta(run_dir: Path, seed: int, status: str, **extra) -> None:
    write_json_atomic(run_dir / "run_metadata.json", {
        "status": status, "run_dir": str(run_dir), "seed": seed, "start_time": "2026-01-01T00:00:00+00:00",
        "end_time": "2026-01-01T00:01:00+00:00", "duration_s": 60.0 + seed, "attempts": [], **extra})


def _training_state(run_dir: Path, status: str, value: float, steps: int = 4) -> None:
    history = []
    for step in range(1, steps + 1):
        history.append({"loss": 0.7 - 0.05 * step, "grad_norm": 1.0, "learning_rate": 1e-4, "loss/ce": 0.6,
                        "epoch": step / steps, "step": step})
        if step % 2 == 0:  # trainer.eval_steps=2: the eval entries TaskEvalMixin logs
            history.append({f"eval/{KEY}": value - 0.01 * (steps - step), "eval/validation/f1": value,
                            "epoch": step / steps, "step": step})
    write_json_atomic(run_dir / "training_state.json", {
        "status": status, "global_step": steps, "max_steps": 4, "epoch": 1.0,
        "last_checkpoint": f"checkpoint-{steps}", "peak": {"metric": KEY}, "resumes": [],
        "log_history": history})


def _finished(run_dir: Path, seed: int, value: float) -> None:
    _meta(run_dir, seed, "finished", primary_metric=KEY)
    _training_state(run_dir, "finished", value)
    pre = {"student": {KEY: STUDENT_PRE, "validation/f1": 0.4}, "teacher": {KEY: TEACHER, "validation/f1": 0.9}}
    post = {"student": {KEY: value, "validation/f1": value - 0.1}, "teacher": dict(pre["teacher"])}
    gap = transfer_gap(KEY, student_pre=STUDENT_PRE, student_post=value, teacher_pre=TEACHER, teacher_post=TEACHER)
    write_json_atomic(run_dir / "metrics.json", {"primary_metric": KEY, "pre": pre, "post": post,
                                                 "transfer_gap": gap.as_dict(), "peak": {"metric": KEY},
                                                 "train": {"global_step": 4}})


def build_sweep(sweep_dir: Path) -> Path:
    """The far_study sweep directory: 24 expected jobs, 23 run directories."""
    sweep_dir.mkdir(parents=True)
    configs = {arm: compose_config(["experiment=far_study", "task=demo", f"loss={arm}", "trainer.max_steps=4",
                                    "trainer.eval_steps=2", "task.max_train_samples=64"]) for arm in ARMS}
    for num, (arm, seed) in enumerate((a, s) for a in ARMS for s in SEEDS):
        name = f"{num:03d}_{arm}_seed{seed}"
        if name == MISSING:
            continue
        run_dir = sweep_dir / name
        run_dir.mkdir()
        cfg = configs[arm].copy()
        cfg.seed, cfg.run_dir = seed, str(run_dir)
        write_resolved_config(run_dir, cfg)
        if name == FAILED[0]:
            _meta(run_dir, seed, "failed", error=FAILED[1])
        elif name == INTERRUPTED:
            _meta(run_dir, seed, "interrupted", interrupted_by="SIGUSR1")
            _training_state(run_dir, "interrupted", 0.0, steps=2)
        else:
            _finished(run_dir, seed, VALUES[arm][seed])
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({
        "hydra": {"sweeper": {"_target_": BASIC_SWEEPER, "max_batch_size": None,
                              "params": {"loss": ",".join(ARMS), "seed": "1,2,3"}},
                  "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
                  "overrides": {"task": ["experiment=far_study", "task=demo", "trainer.max_steps=4"]},
                  "runtime": {"choices": {"loss": "ce", "experiment": "far_study"}}},
        "seed": 42, "study_name": "far_study"}))
    return sweep_dir


def study(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forge.study", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["arm"]: row for row in csv.DictReader(handle)}


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and width > 100 and height > 100 \
        and data.rstrip()[-8:-4] == b"IEND"


def _mean(values):
    return sum(values) / len(values)


def _sd(values):
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = build_sweep(tmp_path_factory.mktemp("study") / "far_study" / "2026-01-01_00-00-00")
    proc = study(str(sweep), cwd=sweep.parent)
    assert proc.returncode == 0, proc.stderr
    return sweep, proc


def test_csv_numbers_match_hand_computed_values(report):
    sweep, _ = report
    rows = read_rows(sweep / "study.csv")
    assert list(rows) == ARMS  # sweep order
    ce = rows["ce"]
    assert ce["n_seeds"] == "3" and ce["seeds"] == "1 2 3" and ce["F"] == ce["A"] == ce["R"] == "0"
    assert float(ce["mean"]) == pytest.approx((0.80 + 0.82 + 0.79) / 3)
    assert float(ce["boot_lo"]) == pytest.approx(0.79) and float(ce["boot_hi"]) == pytest.approx(0.82)  # n=3: range
    half = 4.303 * _sd([0.80, 0.82, 0.79]) / math.sqrt(3)
    assert float(ce["t_lo"]) == pytest.approx(0.803333 - half, abs=1e-6)
    assert ce["gain"] == ""  # the control arm
    # transfer efficiency = (post − pre) / (teacher − pre), averaged over seeds
    assert float(ce["transfer_efficiency_mean"]) == pytest.approx((0.803333333 - 0.5) / 0.4)
    assert ce["transfer_efficiency_n"] == "3" and float(ce["duration_mean_s"]) == pytest.approx(62.0)

    # combined_r: paired differences 0.05, 0.04, 0.05 -> gain 0.046667, bootstrap CI [0.04, 0.05]
    r = rows["combined_r"]
    assert (r["F"], r["A"], r["R"]) == ("0", "0", "1")
    assert float(r["gain"]) == pytest.approx(0.14 / 3) and r["gain_paired"] == "1" and r["gain_n"] == "3"
    assert float(r["gain_boot_lo"]) == pytest.approx(0.04) and float(r["gain_boot_hi"]) == pytest.approx(0.05)
    half = 4.303 * _sd([0.05, 0.04, 0.05]) / math.sqrt(3)
    assert float(r["gain_t_lo"]) == pytest.approx(0.14 / 3 - half)
    assert float(r["gain_t_hi"]) == pytest.approx(0.14 / 3 + half)
    assert r["gain_boot_excludes_zero"] == "1" and r["gain_t_excludes_zero"] == "1"

    # combined_f lost seed 2 (failed): n 2, paired over seeds 1 and 3: differences 0.03, 0.01
    f = rows["combined_f"]
    assert f["n_seeds"] == "2" and f["seeds"] == "1 3" and f["n_not_usable"] == "1"
    assert float(f["mean"]) == pytest.approx(0.815) and float(f["gain"]) == pytest.approx(0.02)
    assert float(f["gain_boot_lo"]) == pytest.approx(0.01) and float(f["gain_boot_hi"]) == pytest.approx(0.03)
    half = 12.706 * _sd([0.03, 0.01]) / math.sqrt(2)
    assert float(f["gain_t_lo"]) == pytest.approx(0.02 - half)
    assert f["gain_boot_excludes_zero"] == "1" and f["gain_t_excludes_zero"] == "0"

    # combined_a: differences 0.01, −0.005, 0.01: the bootstrap CI [−0.005, 0.01] includes 0
    a = rows["combined_a"]
    assert float(a["gain"]) == pytest.approx(0.005) and a["gain_boot_excludes_zero"] == "0"
    assert rows["combined_far"]["n_seeds"] == "2" and rows["combined_far"]["n_not_usable"] == "1"
    assert rows["combined_ar"]["seeds"] == "1 3" and rows["combined_ar"]["n_not_usable"] == "1"


def test_factorial_effects_in_json_match_hand_computed_values(report):
    sweep, _ = report
    data = json.loads((sweep / "study.json").read_text())
    cell = {"none": [0.80, 0.82, 0.79], "F": [0.83, 0.80], "A": [0.81, 0.815, 0.80], "R": [0.85, 0.86, 0.84],
            "FA": [0.84, 0.83, 0.82], "FR": [0.87, 0.88, 0.86], "AR": [0.85, 0.86], "FAR": [0.89, 0.90]}
    m = {k: _mean(v) for k, v in cell.items()}
    plus = {"F": ["F", "FA", "FR", "FAR"], "A": ["A", "FA", "AR", "FAR"], "R": ["R", "FR", "AR", "FAR"],
            "FxA": ["none", "FA", "R", "FAR"], "FxR": ["none", "A", "FR", "FAR"], "AxR": ["none", "F", "AR", "FAR"],
            "FxAxR": ["F", "A", "R", "FAR"]}
    effects = {e["effect"]: e for e in data["factorial"]["effects"]}
    assert data["factorial"]["computable"] and data["factorial"]["df"] == 24 - 8 - 3
    for name, cells in plus.items():
        expected = (sum(m[c] for c in cells) - sum(m[c] for c in m if c not in cells)) / 4
        assert effects[name]["estimate"] == pytest.approx(expected), name
        lo, hi = effects[name]["boot"]
        assert lo <= expected <= hi
    # pooled within-cell variance, df 13, t(0.975, 13) = 2.160
    ss = sum(sum((v - m[c]) ** 2 for v in vals) for c, vals in cell.items())
    se = math.sqrt(ss / 13 * sum(1 / (16 * len(v)) for v in cell.values()))
    assert effects["F"]["t"][1] - effects["F"]["estimate"] == pytest.approx(2.160 * se)
    assert [p["run"] for p in data["problems"]] == [FAILED[0], INTERRUPTED, MISSING]


def test_markdown_lists_every_unusable_run_with_its_reason(report):
    sweep, proc = report
    text = (sweep / "study.md").read_text()
    assert f"`{FAILED[0]}`" in text and FAILED[1] in text
    assert f"`{INTERRUPTED}`" in text and "interrupted by SIGUSR1" in text and "reached step 2/4" in text
    assert f"`{MISSING}`" in text and "never started" in text
    assert "3 run(s) are left out" in text and "3 not usable" in proc.stdout
    assert "23 run directories" in text
    for setting in ("| task | `demo` |", "| training steps (max_steps) | `4` |",
                    "| seeds (planned or started) | `1, 2, 3` |", "| train subset (max_train_samples) | `64` |"):
        assert setting in text
    assert "**combined_r**: +0.0467 over ce" in text and "both intervals exclude 0" in text
    assert "**combined_a**: +0.0050 over ce" in text and "cannot be told apart from ce" in text
    assert "the bootstrap CI excludes 0 but the t CI does not" in text  # combined_f, 2 seeds
    for png in ("study_arms.png", "study_effects.png", "study_curves.png"):
        assert f"({png})" in text and is_png(sweep / png), png
    assert "periodic evaluation" in text


def test_report_is_reproducible_and_out_and_metric_options_work(report, tmp_path):
    sweep, _ = report
    proc = study(str(sweep), "--out", str(tmp_path / "again"), cwd=sweep.parent)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again" / "study.csv").read_text() == (sweep / "study.csv").read_text()
    assert (tmp_path / "again" / "study_effects.png").read_bytes() == (sweep / "study_effects.png").read_bytes()
    proc = study(str(sweep), "--out", str(tmp_path / "f1"), "--metric", "validation/f1", cwd=sweep.parent)
    assert proc.returncode == 0, proc.stderr
    assert float(read_rows(tmp_path / "f1" / "study.csv")["ce"]["mean"]) == pytest.approx(0.803333 - 0.1, abs=1e-6)


def test_missing_cells_leave_the_factorial_not_computable(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for num, arm in enumerate(["ce", "combined_far"]):
        for seed in (1, 2):
            run_dir = sweep / f"{2 * num + seed - 1:03d}_{arm}_seed{seed}"
            run_dir.mkdir()
            cfg = compose_config(["experiment=far_study", f"loss={arm}", f"seed={seed}"])
            write_resolved_config(run_dir, cfg)
            _finished(run_dir, seed, VALUES[arm][seed])
    proc = study(str(sweep), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (sweep / "study.md").read_text()
    assert "Not computable: cells without a finished run: F, A, FA, R, FR, AR" in text
    assert not (sweep / "study_effects.png").exists() and is_png(sweep / "study_arms.png")


@pytest.mark.parametrize("make, message", [
    ("absent", "does not exist"), ("empty", "no run directories"),
    ("sweep without runs", "multirun.yaml lists 24 jobs; none has started"),
])
def test_bad_paths_exit_2_with_a_clear_message(tmp_path, make, message):
    target = tmp_path / "nowhere"
    if make == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("no runs here")
    if make == "sweep without runs":
        build_sweep(target)
        for run_dir in target.iterdir():
            if run_dir.is_dir():
                shutil.rmtree(run_dir)
    proc = study(str(target), cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (target / "study.md").exists()


def test_callback_writes_after_the_last_local_job_and_never_raises(tmp_path, capsys):
    sweep = build_sweep(tmp_path / "sweep")
    callback = StudyReportCallback()

    launcher = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}

    def job_cfg(num: int):
        return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "job": {"num": num}, "launcher": launcher,
                                           "mode": "MULTIRUN"}})

    single = job_cfg(23)
    single.hydra.mode = "RUN"  # one run of a study's experiment: no sweep, no report
    callback.on_job_end(single)
    assert not (sweep / "study.md").exists()
    callback.on_job_end(job_cfg(22))
    assert not (sweep / "study.md").exists()  # not the last job yet
    callback.on_job_end(job_cfg(23))  # the last job of the grid (even if it failed)
    assert (sweep / "study.md").is_file()
    (sweep / "study.md").unlink()
    callback.on_multirun_end(job_cfg(23))
    assert not (sweep / "study.md").exists()  # already written for this sweep: not twice

    broken = StudyReportCallback()
    broken.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "no_runs")}}}))
    assert "could not write the study report" in capsys.readouterr().err


@pytest.mark.slow
def test_real_sweep_report_is_written_by_the_callback(tmp_path):
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "launch.py"), "-m", "experiment=far_study", "task=demo", "seed=1,2",
         "logger=none", "task.max_train_samples=32", "task.max_eval_samples=16", "task.max_length=32",
         "trainer.max_steps=2", "trainer.per_device_train_batch_size=8", "trainer.save_steps=2",
         "trainer.eval_steps=1", "trainer.logging_steps=1", "teacher_strategy.finetune_steps=1",
         "teacher_strategy.finetune_batch_size=8", f"output_root={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1500, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = list((out / "sweeps" / "far_study").iterdir())
    assert "forge.study: wrote the study report" in proc.stdout
    rows = read_rows(sweep / "study.csv")
    assert list(rows) == ARMS and all(row["n_seeds"] == "2" and row["n_not_usable"] == "0" for row in rows.values())
    text = (sweep / "study.md").read_text()
    assert "from 16 run directories (16 finished with a value, 0 not usable)" in text
    assert "None: every run found finished" in text
    data = json.loads((sweep / "study.json").read_text())
    assert data["factorial"]["computable"] and len(data["factorial"]["effects"]) == 7
    for arm in data["arms"]:
        assert arm["curve"]["kind"] == "eval" and [p[0] for p in arm["curve"]["points"]] == [1, 2], arm["arm"]
    for png in ("study_arms.png", "study_effects.png", "study_curves.png"):
        assert is_png(sweep / png)
