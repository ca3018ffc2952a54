"""forge.study's readers: the 2x2x2 cell of a run from its resolved loss config (composed from the
real conf/ files), the jobs a sweep asked for from multirun.yaml, and the curves in a log history."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from forge.study.factors import Factors, loss_families, run_factors
from forge.study.grid import BASIC_SWEEPER, job_number, read_grid
from forge.study.runs import curves, discover
from tests.conftest import compose_config


def _resolved(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_config(overrides), resolve=True)


@pytest.mark.parametrize("loss, label", [
    ("ce", "none"), ("combined_f", "F"), ("combined_a", "A"), ("combined_r", "R"), ("combined_fa", "FA"),
    ("combined_fr", "FR"), ("combined_ar", "AR"), ("combined_far", "FAR"), ("staged_fr", "FR"),
    ("staged_far", "FAR"), ("response_kl", "R"), ("feature_cosine", "F"), ("attention_kl", "A"),
])
def test_every_loss_option_lands_in_its_cell(loss, label):
    assert run_factors(_resolved(["experiment=far_study", f"loss={loss}"])).label == label


def test_cell_follows_the_resolved_parts_not_the_arm_name():
    cfg = _resolved(["experiment=far_study", "loss=combined_far", "loss.attention=null"])
    assert cfg["loss"]["name"] == "combined_far" and run_factors(cfg) == Factors(True, False, True)
    cfg = _resolved(["experiment=far_study", "loss=combined_far", "loss.weights.response=0"])
    assert run_factors(cfg).label == "FA"  # a zero-weighted family contributes nothing


def test_staged_family_counts_only_if_a_phase_weighs_it():
    staged = {"_target_": "forge.losses.composite.StagedLoss", "feature": {"_target_": "x"},
              "response": {"_target_": "y"}, "attention": None,
              "phases": [{"until_step": 5, "weights": {"feature": 1.0, "attention": 0.0, "response": 0.0}}]}
    assert loss_families(staged) == {"feature"}


def test_sft_mode_and_unknown_losses():
    combined = {"_target_": "forge.losses.composite.CombinedLoss", "feature": {}}
    assert run_factors({"mode": {"name": "sft"}, "loss": combined}, {"mode": {"uses_loss": False}}) == \
        Factors(False, False, False)
    # a run directory written before modes were objects says so in its config
    assert run_factors({"mode": {"requires_teacher": False}, "loss": combined}) == Factors(False, False, False)
    assert run_factors({"loss": {"_target_": "mypkg.MyLoss"}}) is None
    assert run_factors({}) is None


def _multirun(tmp_path, params: dict, command_line: list[str], loss_choice: str = "ce", seed: int = 42):
    data = {"hydra": {"sweeper": {"_target_": BASIC_SWEEPER, "params": params},
                      "overrides": {"task": command_line}, "runtime": {"choices": {"loss": loss_choice}}},
            "seed": seed}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(data))
    return read_grid(tmp_path)


def test_grid_is_the_sweepers_product_with_the_command_line_winning(tmp_path):
    params = {"loss": "ce,combined_f,combined_far", "seed": "1,2,3"}
    grid = _multirun(tmp_path, params, ["experiment=far_study", "seed=range(1,3)", "trainer.max_steps=2"])
    assert [j.run_name for j in grid.jobs] == ["000_ce_seed1", "001_ce_seed2", "002_combined_f_seed1",
                                               "003_combined_f_seed2", "004_combined_far_seed1",
                                               "005_combined_far_seed2"]
    assert grid.swept_keys == ("loss", "seed") and grid.note is None


def test_grid_of_a_single_arm_takes_the_composed_loss_and_seed(tmp_path):
    grid = _multirun(tmp_path, {}, ["alpha=0.3,0.7"], loss_choice="combined_r", seed=7)
    assert [j.run_name for j in grid.jobs] == ["000_combined_r_seed7", "001_combined_r_seed7"]
    assert grid.swept_keys == ("alpha",)


def test_unreadable_multirun_gives_a_note_not_a_crash(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra: [unclosed")
    grid = read_grid(tmp_path)
    assert grid.jobs == () and "could not be read" in grid.note


def test_job_number_from_run_dir_names():
    assert job_number("007_combined_fa_seed2") == 7 and job_number("teacher_sft") is None
    assert job_number("2026-11-23_00-32-56") is None


def test_curves_from_a_log_history():
    history = [{"loss": 0.7, "step": 1}, {"loss": 0.6, "step": 2}, {"eval/validation/accuracy": 0.5, "step": 2},
               {"loss": 0.5, "step": 3}, {"train_runtime": 3.0, "train_loss": 0.6, "step": 3}]
    evals, losses = curves(history, "validation/accuracy")
    assert evals == [(2, 0.5)] and losses == [(1, 0.7), (2, 0.6), (3, 0.5)]


def test_discover_stops_at_run_directories_and_skips_hidden_ones(tmp_path):
    for name in ("000_ce_seed1", "001_ce_seed2", ".submitit/x"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "000_ce_seed1" / "wandb" / "files").mkdir(parents=True)
    (tmp_path / "000_ce_seed1" / "wandb" / "files" / "config.yaml").write_text("{}\n")
    (tmp_path / "multirun.yaml").write_text("{}\n")
    runs, sweeps = discover(tmp_path)
    assert [r.name for r in runs] == ["000_ce_seed1", "001_ce_seed2"] and sweeps == [tmp_path]
    assert discover(tmp_path / "000_ce_seed1") == ([tmp_path / "000_ce_seed1"], [])
