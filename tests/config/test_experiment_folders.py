"""A user's own experiment folder (README, "Your own experiment folders"): `--config-dir DIR` (or
`hydra.searchpath=[file://DIR]`) adds DIR to Hydra's search path, so `DIR/experiment/ablations/x.yaml`
is `experiment=ablations/x` and inherits from `DIR/bases/*.yaml` through its defaults list."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from forge.config.ranges import config_range_problems, config_unknown_key_problems
from tests.conftest import REPO_ROOT, SHARED_DATA, compose_config

EXAMPLES = REPO_ROOT / "examples" / "experiments"
ABLATIONS = sorted(p.relative_to(EXAMPLES / "experiment").with_suffix("").as_posix()
                   for p in (EXAMPLES / "experiment").rglob("*.yaml"))
DATA_ROOT = SHARED_DATA / "glue"


def launch(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_examples_exist():
    assert "ablations/01_kd_frozen-base" in ABLATIONS and "ablations/02_kd_frozen-sft" in ABLATIONS


def test_config_dir_composes_base_and_ablation_through_launch():
    proc = launch("--config-dir", "examples/experiments", "experiment=ablations/01_kd_frozen-base",
                  "data_root=/data/glue", "--cfg", "job", "--resolve")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    # from the base (bases/sst2_minilm.yaml)
    assert cfg["task"]["name"] == "sst2" and cfg["model"]["name"] == "minilm"
    assert cfg["task"]["data_dir"] == "/data/glue/SST-2"
    assert cfg["trainer"]["max_steps"] == 300 and cfg["task"]["max_train_samples"] == 4000
    assert cfg["study_name"] == "sst2_minilm_ablations"
    # from the ablation
    assert cfg["mode"]["name"] == "kd" and cfg["teacher_strategy"]["name"] == "frozen_base"
    assert cfg["loss"]["name"] == "combined_fa" and cfg["loss"]["weights"]["attention"] == 0.5
    assert cfg["alpha"] == 0.5


def test_searchpath_override_is_the_same_as_config_dir():
    args = ["experiment=ablations/02_kd_frozen-sft", "data_root=/d", "--cfg", "job"]
    by_dir = launch("--config-dir", str(EXAMPLES), *args)
    by_searchpath = launch(f"hydra.searchpath=[file://{EXAMPLES}]", *args, cwd=REPO_ROOT.parent)
    assert by_dir.returncode == 0 and by_searchpath.returncode == 0, by_dir.stderr + by_searchpath.stderr
    assert by_dir.stdout == by_searchpath.stdout
    cfg = yaml.safe_load(by_dir.stdout)
    assert cfg["teacher_strategy"]["name"] == "frozen_sft" and cfg["loss"]["name"] == "combined_far"
    assert cfg["loss"]["response"]["temperature"] == 4.0 and cfg["trainer"]["max_steps"] == 300


def test_command_line_beats_the_experiment_files():
    cfg = compose_config([f"hydra.searchpath=[file://{EXAMPLES}]", "experiment=ablations/01_kd_frozen-base",
                          "data_root=/d", "trainer.max_steps=7", "loss.weights.attention=2"])
    assert cfg.trainer.max_steps == 7 and cfg.loss.weights.attention == 2.0


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_example_composes_without_problems(ablation):
    cfg = compose_config([f"hydra.searchpath=[file://{EXAMPLES}]", f"experiment={ablation}",
                          f"data_root={DATA_ROOT}"])
    assert cfg.task.data_dir == f"{DATA_ROOT}/SST-2"
    assert config_range_problems(cfg) == [] and config_unknown_key_problems(cfg) == []


def test_a_base_is_not_an_experiment():
    proc = launch("--config-dir", "examples/experiments", "experiment=bases/sst2_minilm", "--cfg", "job")
    assert proc.returncode != 0 and "experiment/bases/sst2_minilm" in proc.stderr


TINY = [
    "task.max_train_samples=32", "task.max_eval_samples=16", "task.max_length=32", "trainer.max_steps=3",
    "trainer.per_device_train_batch_size=8", "trainer.per_device_eval_batch_size=16", "trainer.logging_steps=1",
    "trainer.save_steps=2", "trainer.learning_rate=1e-3", "teacher_strategy.finetune_steps=2",
    "teacher_strategy.finetune_batch_size=8", "logger=none",
]


@pytest.mark.integration
def test_tiny_real_run_of_an_example_ablation(tmp_path):
    out = tmp_path / "outputs"
    proc = launch("--config-dir", "examples/experiments", "experiment=ablations/01_kd_frozen-base",
                  f"data_root={DATA_ROOT}", *TINY, f"output_root={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (meta,) = out.glob("sst2/minilm/kd/combined_fa/*/run_metadata.json")
    assert json.loads(meta.read_text())["status"] == "finished"
