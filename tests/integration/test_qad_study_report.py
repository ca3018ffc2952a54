"""The study report of a QAD sweep (arms named by `arm=` options, compared with `ptq_rtn`): run
directories built from the composed qad_study configs and the blocks the pipeline writes
(forge.eval.quantized_comparison), numbers in study.md and study.json against hand computations;
no FAR factorial section; perplexity read as lower-is-better."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from forge.eval.quantized_comparison import comparison, greater_is_better
from forge.runtime.rundir import write_json_atomic, write_resolved_config
from forge.study.grid import BASIC_SWEEPER
from forge.study.report import write_report
from tests.conftest import SHARED_DATA, compose_config
from tests.integration.test_study_report import _meta, _training_state

pytestmark = pytest.mark.integration

PPL, CHRF = "validation/perplexity", "validation/chrf"
FP = {PPL: 10.0, CHRF: 40.0}
RTN = {PPL: 14.0, CHRF: 30.0}
# (perplexity, chrF) after training, per arm and seed; the PTQ arms train nothing
POST = {
    "ptq_rtn": {1: (14.0, 30.0), 2: (14.0, 30.0)},
    "ptq_gptq": {1: (12.0, 34.0), 2: (12.4, 33.0)},
    "qad_off": {1: (11.0, 38.0), 2: (11.4, 37.0)},
    "qad_on": {1: (11.2, 37.0), 2: (11.0, 38.0)},
}
ARMS = list(POST)


def _run(sweep: Path, num: int, arm: str, seed: int) -> None:
    run_dir = sweep / f"{num:03d}_{arm}_seed{seed}"
    run_dir.mkdir()
    cfg = compose_config(["experiment=qad_study", f"arm={arm}", f"seed={seed}", f"task.data_dir={SHARED_DATA / 'europarl'}"])
    write_resolved_config(run_dir, cfg)
    ppl, chrf = POST[arm][seed]
    trains = arm.startswith("qad")
    pre = {"student": dict(RTN if trains else FP)}
    if trains:
        pre["student_float"], pre["teacher"] = dict(FP), dict(FP)
    post = {"student": {PPL: ppl, CHRF: chrf}}
    block = comparison(pre, post, trains=trains, quantizes_in_training=trains)
    write_json_atomic(run_dir / "metrics.json", {
        "primary_metric": CHRF, "greater_is_better": True, "pre": pre, "post": post,
        "greater_is_better_by_metric": {k: greater_is_better(k) for k in post["student"]},
        "transfer_gap": {}, "quantization": block})
    _meta(run_dir, seed, "finished", primary_metric=CHRF)
    _training_state(run_dir, "finished", chrf)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("qad_sweep")
    for num, (arm, seed) in enumerate((a, s) for a in ARMS for s in (1, 2)):
        _run(sweep, num, arm, seed)
    multirun = {"hydra": {"sweeper": {"_target_": BASIC_SWEEPER, "params": {"arm": ",".join(ARMS), "seed": "1,2"}},
                          "overrides": {"task": ["experiment=qad_study"]}, "runtime": {"choices": {"loss": "ce"}}},
                "seed": 42}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    write_report(sweep, metric=PPL)
    return sweep, (sweep / "study.md").read_text(), json.loads((sweep / "study.json").read_text())


def test_arms_are_the_arm_options_compared_with_ptq_rtn_lower_perplexity_better(report):
    _, markdown, data = report
    assert data["control"] == "ptq_rtn" and data["greater_is_better"] is False
    arms = {a["arm"]: a for a in data["arms"]}
    assert list(arms) == ARMS and not data["problems"]  # every expected job found by its arm name
    assert arms["qad_off"]["mean"] == pytest.approx(11.2)
    assert arms["qad_off"]["gain"] == pytest.approx(11.2 - 14.0)  # below the control: better here
    assert "# Quantization study report" in markdown and "Factorial effects" not in markdown
    assert "lower is better" in markdown


def test_the_side_by_side_table_by_hand(report):
    _, _, data = report
    quantization = data["quantization"]
    rows = {row[0]: dict(zip(quantization["columns"], row)) for row in quantization["rows"]}
    assert rows["FP student"][PPL] == "10.0000" and rows["FP teacher"][CHRF] == "40.0000"
    # per run: qad_off (14 - 11) / 4 = 0.75 and (14 - 11.4) / 4 = 0.65 -> 0.70; chrF (30-38)/(30-40) = 0.8, 0.7
    per_run = rows["`qad_off`"]["recovered (perplexity, per run, 95% bootstrap CI)"]
    assert per_run.startswith("0.7000")
    assert rows["`qad_off`"]["recovered (chrf, per run, 95% bootstrap CI)"].startswith("0.7500")
    # from means: GPTQ's mean perplexity 12.2 against RTN 14 and FP 10 -> 0.45; the PTQ arms have no per-run value
    assert rows["`ptq_gptq`"]["recovered (perplexity, from means)"] == "0.4500"
    assert rows["`ptq_gptq`"]["recovered (perplexity, per run, 95% bootstrap CI)"] == "—"
    assert rows["`ptq_rtn`"]["recovered (perplexity, from means)"] == "0.0000"
    assert rows["`qad_on`"]["recovered (chrf, from means)"] == "0.7500"  # (30 - 37.5) / (30 - 40)


def test_arm_options_name_themselves():
    for path in sorted(Path("conf/arm").glob("*.yaml")):
        assert OmegaConf.load(path)["study_arm"] == path.stem
