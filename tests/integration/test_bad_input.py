"""Bad input gets one clear error before any model loads: key, value, choices or fix; exit code != 0;
no run directory left behind. Each case runs the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def launch(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    out_root = tmp_path / "outputs"
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "launch.py"), f"output_root={out_root}", *overrides],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
    )


def assert_clean_failure(tmp_path: Path, proc: subprocess.CompletedProcess, *needles: str) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    out_root = tmp_path / "outputs"
    assert not out_root.exists() or not any(out_root.rglob("*")), "a failed launch left files behind"
    assert not any(p.name in {".hydra", "launch.log"} for p in tmp_path.rglob("*"))
    return text


def wide_teacher_dir(tmp_path: Path, hidden: int = 768, heads: int = 12, layers: int = 12) -> Path:
    """A local model directory holding only a config (validation must not need weights)."""
    d = tmp_path / f"teacher_{hidden}_{heads}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "bert", "architectures": ["BertModel"], "hidden_size": hidden,
        "num_attention_heads": heads, "num_hidden_layers": layers, "intermediate_size": 4 * hidden,
        "vocab_size": 30522,
    }))
    return d


def test_unknown_option_lists_valid_choices(tmp_path):
    text = assert_clean_failure(tmp_path, launch(tmp_path, "loss=response_kk"), "response_kk", "response_kl")
    assert "combined_far" in text


def test_unknown_task_option(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "task=sst3"), "sst3", "sst2")


def test_bad_enum_value_lists_choices(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "model.student.source=s3"), "source", "packaged")


def test_alpha_out_of_range(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "mode=kd", "loss=feature_mse", "alpha=1.5"), "alpha=1.5", "[0, 1]")


def test_kd_without_teacher(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "mode=kd", "loss=feature_mse", "model.teacher=null"),
                         "model.teacher", "mode=kd")


def test_response_loss_from_untrained_teacher_head(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "mode=kd", "loss=response_kl", "teacher_strategy=frozen_base"),
                         "teacher_strategy", "frozen_sft")


def test_custom_layer_map_past_last_layer(tmp_path):
    assert_clean_failure(
        tmp_path,
        launch(tmp_path, "mode=kd", "loss=feature_mse", "loss.layer_map.strategy=custom", "loss.layer_map.pairs=[[1,2],[3,9]]"),
        "9", "layer",
    )


def test_hidden_size_mismatch_with_identity_projection(tmp_path):
    teacher = wide_teacher_dir(tmp_path)
    assert_clean_failure(
        tmp_path,
        launch(tmp_path, "mode=kd", "loss=feature_mse", "loss.projection=identity",
               "model.teacher.source=local", f"model.teacher.name_or_path={teacher}"),
        "384", "768", "projection=linear",
    )


def test_attention_head_mismatch_without_head_mapping(tmp_path):
    teacher = wide_teacher_dir(tmp_path, hidden=384, heads=8, layers=6)
    assert_clean_failure(
        tmp_path,
        launch(tmp_path, "mode=kd", "loss=attention_kl", "teacher_strategy=frozen_base", "loss.head_map=match",
               "model.teacher.source=local", f"model.teacher.name_or_path={teacher}"),
        "12", "8", "average",
    )


def test_missing_data_dir(tmp_path):
    assert_clean_failure(tmp_path, launch(tmp_path, "task=sst2", f"task.data_dir={tmp_path / 'nope'}"),
                         "task.data_dir", "nope")


def test_data_dir_without_expected_files(tmp_path):
    empty = tmp_path / "SST-2"
    empty.mkdir()
    (empty / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    assert_clean_failure(tmp_path, launch(tmp_path, "task=sst2", f"task.data_dir={empty}"), "task.data_dir", "dev.tsv")


def assert_failed_run(proc: subprocess.CompletedProcess, run_dir: Path, *needles: str) -> str:
    """An expected failure after the run directory was claimed: exit 1, its message on stderr and no
    traceback, the directory marked failed (so it never looks like a good run) and nothing final."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in:\n{proc.stderr}"
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    assert meta["status"] == "failed" and meta["error"]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "final").exists()
    assert "Traceback" not in (run_dir / "output.log").read_text()
    return text


TINY = ["task=demo", "model=minilm", "mode=sft", "logger=none", "task.max_train_samples=16",
        "task.max_eval_samples=8", "task.max_length=32", "trainer.max_steps=1", "trainer.save_steps=0",
        "trainer.per_device_train_batch_size=8"]


def test_a_data_file_without_usable_rows_names_the_file(tmp_path):
    data = tmp_path / "SST-2"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\nno label here\tmaybe\n")
    (data / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    run_dir = tmp_path / "run"
    proc = launch(tmp_path, "task=sst2", f"task.data_dir={data}", "logger=none", f"run_dir={run_dir}")
    assert_failed_run(proc, run_dir, "forge: run stopped:", str(data / "train.tsv"), "no usable rows")


def test_an_unreachable_teacher_server_stops_the_run_without_a_traceback(tmp_path):
    from tests.conftest import SHARED_DATA

    run_dir = tmp_path / "run"
    proc = launch(tmp_path, "task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2",
                  "mode=gkd", "teacher_backend=openai", "teacher_backend.base_url=http://127.0.0.1:9/v1",
                  "teacher_backend.max_retries=1", "teacher_backend.backoff_s=0.1", "mode.trainer.top_k=5",
                  "task.max_train_samples=4", "task.max_eval_samples=2", "logger=none", f"run_dir={run_dir}")
    assert_failed_run(proc, run_dir, "forge: run stopped:", "127.0.0.1:9")


def test_hydra_run_dir_is_honoured_as_the_run_directory(tmp_path):
    run_dir = tmp_path / "chosen" / "run"
    proc = launch(tmp_path, *TINY, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    assert not (tmp_path / "outputs").exists()  # not somewhere else, silently


def test_hydra_run_dir_and_run_dir_naming_two_places_is_refused(tmp_path):
    proc = launch(tmp_path, *TINY, f"hydra.run.dir={tmp_path / 'a'}", f"run_dir={tmp_path / 'b'}")
    assert proc.returncode == 2 and "run_dir" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
