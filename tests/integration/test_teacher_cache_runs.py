"""The teacher cache in real runs: arms of a study share one fine-tuned teacher and its signals,
cached and live teachers train identically, a different key builds anew, and concurrent runs that
need the same cache build it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY_RUN

pytestmark = pytest.mark.integration


def _cache(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_metadata.json").read_text())["teacher_cache"]


def _history(run_dir: Path) -> list[dict]:
    return [e for e in json.loads((run_dir / "training_state.json").read_text())["log_history"] if "loss" in e]


def test_arms_share_one_teacher_and_each_signal_is_built_once(tiny_run, tmp_path):
    root = tmp_path / "cache"
    runs = {}
    for loss, seed in (("combined_f", 1), ("combined_fa", 2), ("combined_far", 3), ("combined_r", 1), ("ce", 2)):
        cfg, _ = tiny_run("mode=kd", f"loss={loss}", f"seed={seed}", "teacher_strategy.seed=0",
                          "task.seed=0", f"teacher.cache_root={root}", f"run_dir={tmp_path / loss}")
        runs[loss] = _cache(tmp_path / loss)
    first = runs["combined_f"]
    assert "teacher_finetune_s" in first and first["built"] == ["hidden_2", "hidden_4", "hidden_6"]
    assert runs["combined_fa"]["reused"] == ["hidden_2", "hidden_4", "hidden_6"]
    assert runs["combined_fa"]["built"] == ["attn_1", "attn_3", "attn_5"]
    assert runs["combined_far"]["built"] == ["logits"] and len(runs["combined_far"]["reused"]) == 6
    assert runs["combined_r"]["built"] == [] and runs["combined_r"]["reused"] == ["logits"]
    # the control arm reads no signal but shares the teacher (for its transfer gap) and its scores
    assert runs["ce"]["entries"] == [] and "dir" not in runs["ce"] and not (tmp_path / "ce" / "teacher_sft").exists()
    assert json.loads((tmp_path / "ce" / "metrics.json").read_text())["pre"]["teacher"] == \
        json.loads((tmp_path / "combined_f" / "metrics.json").read_text())["pre"]["teacher"]
    assert {r["dir"] for r in runs.values() if "dir" in r} == {first["dir"]}  # one key: same teacher, data, dtype
    assert {r["teacher_dir"] for r in runs.values()} == {first["teacher_dir"]}
    assert all("teacher_finetune_s" not in r for loss, r in runs.items() if loss != "combined_f")
    assert len(list((root / "teachers").glob("[0-9a-f]*"))) == 1
    assert all(r["teacher_eval"] == "reused" for loss, r in runs.items() if loss != "combined_f")


def test_cached_and_live_teacher_train_identically(tiny_run, tmp_path):
    common = ("mode=kd", "loss=combined_far", "teacher.cache_dtype=float32", f"teacher.cache_root={tmp_path / 'c'}")
    tiny_run(*common, "teacher.cache=on", f"run_dir={tmp_path / 'on'}")
    _, live = tiny_run(*common, "teacher.cache=off", f"run_dir={tmp_path / 'off'}")
    assert _cache(tmp_path / "off") == {"used": False, "reason": "teacher.cache=off"}
    cached, online = _history(tmp_path / "on"), _history(tmp_path / "off")
    assert len(cached) == len(online) == 3
    for a, b in zip(cached, online):
        for key in ("loss", "loss/ce", "loss/feature", "loss/attention", "loss/response"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    post_on = json.loads((tmp_path / "on" / "metrics.json").read_text())["post"]
    assert post_on == live["post"]


def test_a_different_key_never_reuses(tiny_run, tmp_path):
    root = tmp_path / "cache"
    tiny_run("mode=kd", "loss=combined_r", f"teacher.cache_root={root}", f"run_dir={tmp_path / 'a'}")
    tiny_run("mode=kd", "loss=combined_r", f"teacher.cache_root={root}", "task.max_length=24",
             f"run_dir={tmp_path / 'b'}")
    tiny_run("mode=kd", "loss=combined_r", f"teacher.cache_root={root}", "teacher.cache_dtype=float32",
             f"run_dir={tmp_path / 'c'}")
    dirs = [_cache(tmp_path / name)["dir"] for name in "abc"]
    assert len(set(dirs)) == 3
    assert all(_cache(tmp_path / name)["built"] == ["logits"] for name in "abc")
    manifest = json.loads((Path(dirs[1]) / "manifest.json").read_text())
    assert manifest["parts"]["max_length"] == 24 and manifest["parts"]["dtype"] == "float16"


def test_concurrent_runs_build_the_cache_once(tmp_path):
    root = tmp_path / "cache"
    args = [sys.executable, str(REPO_ROOT / "launch.py"), *TINY_RUN, "mode=kd", "loss=combined_fa",
            "teacher_strategy=frozen_base", "logger=none", f"teacher.cache_root={root}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([*args, f"run_dir={tmp_path / f'r{i}'}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    reports = [_cache(tmp_path / f"r{i}") for i in range(2)]
    built = sorted(len(r["built"]) for r in reports)
    assert built == [0, 6], reports  # one built every entry, the other waited and read them
    assert reports[0]["dir"] == reports[1]["dir"]
    assert _history(tmp_path / "r0") == _history(tmp_path / "r1")
    assert not list(Path(reports[0]["dir"]).glob("*partial*"))


def test_a_cached_run_resumed_from_a_checkpoint_continues_step_for_step(tiny_run, tmp_path):
    common = ("mode=kd", "loss=combined_far", "trainer.max_steps=4", f"teacher.cache_root={tmp_path / 'c'}")
    tiny_run(*common, f"run_dir={tmp_path / 'whole'}")
    tiny_run(*common, f"resume={tmp_path / 'whole' / 'checkpoint-2'}", f"run_dir={tmp_path / 'resumed'}")
    whole = {e["step"]: e for e in _history(tmp_path / "whole")}
    resumed = {e["step"]: e for e in _history(tmp_path / "resumed")}
    assert {3, 4} <= set(resumed)  # (steps 1-2 come with the checkpoint's own history)
    for step in (3, 4):
        for key in ("loss", "loss/feature", "loss/attention", "loss/response"):
            assert resumed[step][key] == pytest.approx(whole[step][key], rel=1e-5), (step, key)
    assert _cache(tmp_path / "resumed")["built"] == []
