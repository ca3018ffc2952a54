"""The study report of a GKD λ/β sweep (experiment=gkd_study): arms named by their settings through
`study_arm_keys`, every expected job found under that name, compared with gkd_lmbda0_beta0, the
numbers against hand computations; and a plain β sweep without `study_arm_keys` says how to get arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from forge.config.arm_names import arm_of
from forge.runtime.rundir import write_json_atomic, write_resolved_config
from forge.study.grid import BASIC_SWEEPER, read_grid
from forge.study.report import write_report
from tests.conftest import SHARED_DATA, compose_config
from tests.integration.test_study_report import _meta, _training_state

pytestmark = pytest.mark.integration

BLEU = "validation/bleu"
LMBDAS, BETAS, SEEDS = ("0", "0.5"), ("0", "0.5", "1"), (1, 2)
# BLEU after training per (λ, β) and seed
POST = {("0", "0"): (20.0, 21.0), ("0", "0.5"): (22.0, 23.0), ("0", "1"): (23.0, 25.0),
        ("0.5", "0"): (21.0, 21.0), ("0.5", "0.5"): (24.0, 24.0), ("0.5", "1"): (25.0, 26.0)}
DATA = f"task.data_dir={SHARED_DATA / 'europarl'}"


def _config(*overrides: str):
    return compose_config(["experiment=gkd_study", DATA, *overrides])


def _sweep(root: Path, *fixed: str, params: dict[str, str]) -> Path:
    """A sweep directory as Hydra leaves it: multirun.yaml (the config without the swept keys)."""
    root.mkdir()
    multirun = yaml.safe_load(OmegaConf.to_yaml(_config(*fixed)))
    multirun["hydra"] = {"sweeper": {"_target_": BASIC_SWEEPER, "params": params},
                         "overrides": {"task": ["experiment=gkd_study", DATA, *fixed]},
                         "runtime": {"choices": {"loss": "ce"}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun, sort_keys=False))  # as OmegaConf.save keeps order
    return root


def _finished_run(sweep: Path, num: int, overrides: list[str], seed: int, bleu: float, *fixed: str) -> str:
    cfg = _config(*fixed, *overrides, f"seed={seed}")
    name = f"{num:03d}_{arm_of(cfg)}_seed{seed}"
    run_dir = sweep / name
    run_dir.mkdir()
    write_resolved_config(run_dir, cfg)
    write_json_atomic(run_dir / "metrics.json", {
        "primary_metric": BLEU, "greater_is_better": True, "pre": {"student": {BLEU: 10.0}},
        "post": {"student": {BLEU: bleu}}, "transfer_gap": {}})
    _meta(run_dir, seed, "finished", primary_metric=BLEU)
    _training_state(run_dir, "finished", bleu)
    return name


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    params = {"mode.trainer.lmbda": ",".join(LMBDAS), "mode.trainer.beta": ",".join(BETAS), "seed": "1,2"}
    sweep = _sweep(tmp_path_factory.mktemp("gkd") / "sweep", params=params)
    names, num = [], 0
    for lmbda in LMBDAS:  # BasicSweeper's order: the params' keys in order, the last one fastest
        for beta in BETAS:
            for seed in SEEDS:
                overrides = [f"mode.trainer.lmbda={lmbda}", f"mode.trainer.beta={beta}"]
                names.append(_finished_run(sweep, num, overrides, seed, POST[(lmbda, beta)][seed - 1]))
                num += 1
    write_report(sweep)
    return sweep, names, (sweep / "study.md").read_text(), json.loads((sweep / "study.json").read_text())


def test_arms_are_named_by_lmbda_and_beta_and_every_expected_job_is_found(study):
    sweep, names, markdown, data = study
    assert names[:3] == ["000_gkd_lmbda0_beta0_seed1", "001_gkd_lmbda0_beta0_seed2", "002_gkd_lmbda0_beta0.5_seed1"]
    assert [job.run_name for job in read_grid(sweep).jobs] == names  # launcher and report name jobs alike
    arms = {a["arm"]: a for a in data["arms"]}
    assert sorted(arms) == sorted(f"gkd_lmbda{lm}_beta{b}" for lm in LMBDAS for b in BETAS)
    assert not data["problems"] and data["control"] == "gkd_lmbda0_beta0"
    assert "also varies" not in markdown and "Factorial effects" not in markdown
    # not a loss factorial: no F/A/R columns, no FAR title, no pointer to the loss-layer workbench
    assert markdown.startswith("# Study report\n") and "| arm | n | mean |" in markdown
    assert "workbench_sweep.md" not in markdown


def test_each_arm_against_the_control_by_hand(study):
    _, _, _, data = study
    arms = {a["arm"]: a for a in data["arms"]}
    assert arms["gkd_lmbda0_beta1"]["mean"] == pytest.approx(24.0)
    # paired by seed against gkd_lmbda0_beta0 (20, 21): (23 - 20 + 25 - 21) / 2
    assert arms["gkd_lmbda0_beta1"]["gain"] == pytest.approx(3.5)
    assert arms["gkd_lmbda0.5_beta1"]["gain"] == pytest.approx(5.0)
    assert arms["gkd_lmbda0_beta0"]["gain"] is None


def test_a_beta_sweep_without_arm_keys_says_how_to_compare_the_betas(tmp_path):
    sweep = _sweep(tmp_path / "plain", "study_arm_keys=[]", "study_control=null",
                   params={"mode.trainer.beta": "0,1", "seed": "1"})
    for num, beta in enumerate(("0", "1")):
        _finished_run(sweep, num, [f"mode.trainer.beta={beta}"], 1, 20.0 + num, "study_arm_keys=[]",
                      "study_control=null")
    write_report(sweep)
    data = json.loads((sweep / "study.json").read_text())
    assert [a["arm"] for a in data["arms"]] == ["gkd"] and data["arms"][0]["mean"] == pytest.approx(20.5)
    assert "mode.trainer.beta" in (sweep / "study.md").read_text().split("also varies")[1].split("\n")[0]
    assert "name them in study_arm_keys" in (sweep / "study.md").read_text()
