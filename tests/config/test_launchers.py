"""Launcher options: every hydra/launcher option composes, the SLURM one is requeue-friendly, and
an option the chosen launcher lacks is refused with a message that names the launcher that has it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from forge.config.launcher import check_launcher_overrides
from forge.config.schema import register_schemas
from tests.conftest import CONF_DIR, REPO_ROOT, group_options


def _hydra_cfg(overrides: list[str]):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("option", group_options("hydra/launcher"))
def test_every_launcher_option_composes(option):
    cfg = _hydra_cfg([f"hydra/launcher={option}"])
    assert cfg.hydra.launcher._target_


def test_default_sweep_launcher_runs_jobs_one_after_another():
    cfg = _hydra_cfg([])
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")


def test_a_sweep_without_a_study_name_goes_to_sweeps_sweep():
    """A null study_name names the folder `sweep` (it used to be `None`); an experiment names its own."""
    assert "/sweeps/sweep/" in _hydra_cfg([]).hydra.sweep.dir
    assert "/sweeps/far_study/" in _hydra_cfg(["experiment=far_study"]).hydra.sweep.dir
    assert "/sweeps/mine/" in _hydra_cfg(["study_name=mine"]).hydra.sweep.dir


def test_slurm_launcher_defaults_allow_requeue():
    launcher = _hydra_cfg(["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout >= 3
    assert launcher.array_parallelism >= 1 and launcher.timeout_min > 0


def test_far_study_sweeps_eight_arms_times_three_seeds():
    cfg = _hydra_cfg(["experiment=far_study"])
    params = cfg.hydra.sweeper.params
    arms = params.loss.split(",")
    assert sorted(arms) == sorted(["ce", "combined_f", "combined_a", "combined_r", "combined_fa", "combined_fr",
                                   "combined_ar", "combined_far"])
    assert params.seed.split(",") == ["1", "2", "3"]
    assert cfg.mode.name == "kd" and cfg.study_name == "far_study"


def test_unknown_launcher_option_names_the_launcher_that_has_it():
    message = check_launcher_overrides(["-m", "hydra.launcher.array_parallelism=4"])
    assert "'array_parallelism' is not an option of the 'local' launcher" in message
    assert "hydra/launcher=slurm" in message
    assert check_launcher_overrides(["hydra/launcher=slurm", "hydra.launcher.array_parallelism=4"]) is None
    typo = check_launcher_overrides(["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"])
    assert "'partiton'" in typo and "check the spelling" in typo and "partition" in typo
    assert check_launcher_overrides(["trainer.max_steps=3"]) is None


def test_unknown_launcher_option_exits_2_before_anything_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "launch.py"), "-m", "experiment=far_study",
         f"output_root={tmp_path / 'out'}", "hydra.launcher.signal_delay_s=60"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "signal_delay_s" in proc.stderr and "hydra/launcher=slurm" in proc.stderr
    assert not (tmp_path / "out").exists()
