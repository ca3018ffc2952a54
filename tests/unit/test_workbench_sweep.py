"""forge.workbench.sweep on a fabricated sweep (ce, combined_f, combined_r x seeds 1-3) read back
through forge.study: per-arm mapped-layer CKA and best probe layer, gains paired by seed, Pearson r
of alignment and gain with its bootstrap CI, the sentence, the files, and runs without a workbench."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import yaml

from forge.workbench.sweep import correlate, load_workbench, sweep_view, workbench_file
from forge.workbench.sweep_report import alignment_sentence, analyse_sweep, write_sweep_view

METRIC = "validation/accuracy"
LOSSES = {
    "ce": {"_target_": "forge.losses.base.NoDistillation", "name": "ce"},
    "combined_f": {"_target_": "forge.losses.composite.CombinedLoss", "name": "combined_f",
                   "feature": {"_target_": "forge.losses.feature.FeatureMSE"}, "attention": None,
                   "response": None, "weights": {"feature": 1.0}},
    "combined_r": {"_target_": "forge.losses.composite.CombinedLoss", "name": "combined_r",
                   "feature": None, "attention": None,
                   "response": {"_target_": "forge.losses.response.ResponseKL"}, "weights": {"response": 1.0}},
}
# arm -> per seed 1, 2, 3: (student metric, mapped CKA after, mapped CKA before, best probe layer, its accuracy)
RUNS = {
    "ce": [(0.70, 0.40, 0.40, 2, 0.70), (0.72, 0.42, 0.40, 2, 0.72), (0.74, 0.44, 0.40, 3, 0.74)],
    "combined_f": [(0.75, 0.60, 0.40, 3, 0.80), (0.74, 0.55, 0.40, 3, 0.78), (0.80, 0.70, 0.41, 4, 0.82)],
    "combined_r": [(0.71, 0.41, 0.40, 1, 0.75), (0.73, 0.45, 0.40, 2, 0.76), (0.76, 0.43, 0.40, 2, None)],
}


def _workbench(run_dir: Path, arm: str, seed: int, cka: Optional[float], initial: float, layer: int,
               accuracy: Optional[float]) -> dict:
    return {"run": str(run_dir), "arm": arm, "seed": seed, "primary_metric": METRIC, "greater_is_better": True,
            "probe": {"best": {"student": {"layer": layer, "depth": 1.0, "accuracy": accuracy, "metric": accuracy},
                               "teacher": {"layer": 4, "depth": 1.0, "accuracy": 0.9, "metric": 0.9}}},
            "cka": {"debiased": True, "mean_mapped_cka": {"student": cka, "initial": initial},
                    "map_source": "loss.feature.layer_map"}}


def _make_sweep(root: Path, skip_workbench: tuple[str, ...] = ()) -> Path:
    """Run directories as forge.run leaves them (config.yaml, run_metadata.json, metrics.json) plus the
    per-run workbench.json; runs named in skip_workbench get none."""
    job = 0
    for arm, runs in RUNS.items():
        for seed, (value, cka, initial, layer, accuracy) in enumerate(runs, start=1):
            run_dir = root / f"{job:03d}_{arm}_seed{seed}"
            job += 1
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "loss": LOSSES[arm]}))
            (run_dir / "run_metadata.json").write_text(json.dumps({"status": "finished"}))
            (run_dir / "metrics.json").write_text(json.dumps({
                "primary_metric": METRIC, "greater_is_better": True,
                "pre": {"student": {METRIC: 0.5}}, "post": {"student": {METRIC: value}, "teacher": {METRIC: 0.9}}}))
            if run_dir.name not in skip_workbench:
                workbench_file(run_dir).parent.mkdir()
                workbench_file(run_dir).write_text(json.dumps(
                    _workbench(run_dir, arm, seed, cka, initial, layer, accuracy)))
    return root


def _arm(view, name):
    return next(a for a in view.arms if a.arm == name)


def test_per_arm_cka_probe_layer_and_paired_gains(tmp_path):
    root = _make_sweep(tmp_path / "sweep")
    view = sweep_view(root, load_workbench(root))
    assert view.control == "ce" and view.metric == METRIC and not view.missing and not view.problems
    ce, f, r = _arm(view, "ce"), _arm(view, "combined_f"), _arm(view, "combined_r")
    assert (ce.cka_student, ce.cka_initial, ce.cka_change) == (pytest.approx(0.42), pytest.approx(0.40),
                                                               pytest.approx(0.02))
    assert f.cka_student == pytest.approx((0.60 + 0.55 + 0.70) / 3)
    assert f.cka_initial == pytest.approx((0.40 + 0.40 + 0.41) / 3)
    assert f.cka_change == pytest.approx((0.20 + 0.15 + 0.29) / 3)
    # the feature loss's family comes from its resolved config, not its name
    assert f.factors.F and not f.factors.A and not r.factors.F and r.factors.R
    # best probe layer: the most common one; its accuracy the mean over the runs that have one
    assert (ce.probe_layer, f.probe_layer, r.probe_layer) == (2, 3, 2) and r.probe_layer_runs == 2
    assert f.probe_accuracy == pytest.approx(0.80) and r.probe_accuracy == pytest.approx(0.755)
    # gains: each run minus the ce run of its seed
    gains = {(p.arm, p.seed): p.gain for p in view.runs}
    assert [gains["combined_f", s] for s in (1, 2, 3)] == [pytest.approx(g) for g in (0.05, 0.02, 0.06)]
    assert [gains["combined_r", s] for s in (1, 2, 3)] == [pytest.approx(g) for g in (0.01, 0.01, 0.02)]
    assert f.gain == pytest.approx(0.13 / 3) and r.gain == pytest.approx(0.04 / 3) and ce.gain is None
    # CKA over ce, paired by seed: 0.20, 0.13, 0.26; at 3 seeds the bootstrap CI is their range
    over = f.cka_over_control.estimate
    assert over.mean == pytest.approx(0.59 / 3) and (over.boot.lo, over.boot.hi) == (pytest.approx(0.13),
                                                                                      pytest.approx(0.26))
    assert ce.cka_over_control is None


def test_alignment_predicts_gain_correlation_and_sentence(tmp_path):
    root = _make_sweep(tmp_path / "sweep")
    view = sweep_view(root, load_workbench(root))
    x = [0.60, 0.55, 0.70, 0.41, 0.45, 0.43]  # combined_f, combined_r (ce left out)
    y = [0.05, 0.02, 0.06, 0.01, 0.01, 0.02]
    c = view.correlation
    assert c.n == 6 and c.r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert c.boot.lo <= c.r <= c.boot.hi and c.boot.hi <= 1.0
    assert c.n_boot <= 2000 and c.boot.excludes_zero
    sentence = alignment_sentence(view)
    # combined_f: 0.6167 vs ce 0.4200, +0.1967, t CI 0.1967 ± 4.303 · 0.06506 / √3 excludes 0 as well
    assert "`combined_f` 0.6167 vs `ce` 0.4200 (+0.1967" in sentence
    assert "above `ce` beyond seed noise" in sentence
    assert "No arm with an attention loss finished." in sentence
    assert f"Pearson r = {c.r:+.3f}" in sentence and "the CI excludes 0" in sentence


def test_files_are_written_and_the_json_round_trips(tmp_path):
    root = _make_sweep(tmp_path / "sweep")
    view = sweep_view(root, load_workbench(root))
    paths = write_sweep_view(root, view, tmp_path / "out")
    assert set(paths) == {"markdown", "json", "scatter"} and all(p.is_file() for p in paths.values())
    assert paths["scatter"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())
    assert data == json.loads(json.dumps(view.to_json() | {"sentence": alignment_sentence(view), "root": str(root),
                                                           "figures": {"scatter": "alignment_vs_gain.png"}}))
    arm_f = next(a for a in data["arms"] if a["arm"] == "combined_f")
    assert arm_f["F"] is True and arm_f["cka_student"] == pytest.approx(0.61667, abs=1e-5)
    assert data["correlation"]["r"] == pytest.approx(view.correlation.r) and data["correlation"]["n"] == 6
    markdown = paths["markdown"].read_text()
    assert "| `combined_f` | ✓ | · | · | 3/3 | 0.6167 | 0.4033 | +0.2133 |" in markdown
    assert "![alignment vs gain](alignment_vs_gain.png)" in markdown and alignment_sentence(view) in markdown


def test_a_run_without_workbench_is_listed_missing(tmp_path):
    root = _make_sweep(tmp_path / "sweep", skip_workbench=("008_combined_r_seed3",))
    view = sweep_view(root, load_workbench(root))
    assert [(m["run"], m["arm"], m["seed"]) for m in view.missing] == [("008_combined_r_seed3", "combined_r", 3)]
    r = _arm(view, "combined_r")
    assert (r.runs, r.with_workbench) == (3, 2) and r.cka_student == pytest.approx(0.43)
    assert view.correlation.n == 5
    # the one-call form the workbench CLI uses reads the same files
    paths = analyse_sweep(root, tmp_path / "out")
    markdown = paths["markdown"].read_text()
    assert "## Runs left out" in markdown and "`008_combined_r_seed3`" in markdown
    assert json.loads(paths["json"].read_text())["missing"][0]["run"] == "008_combined_r_seed3"


def test_skipped_analyses_and_too_few_points(tmp_path):
    root = _make_sweep(tmp_path / "sweep")
    workbench = load_workbench(root)
    for run_dir, data in workbench.items():
        if "combined_r" in run_dir.name or run_dir.name.endswith("seed3"):
            data["cka"]["mean_mapped_cka"] = {"student": None, "initial": float("nan")}
    view = sweep_view(root, workbench)
    assert view.correlation.r is None and view.correlation.n == 2 and "need 3" in view.correlation.reason
    assert _arm(view, "combined_r").cka_student is None and _arm(view, "combined_f").cka_initial == 0.40
    assert "cannot be told" in alignment_sentence(view)
    paths = write_sweep_view(root, view, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["correlation"]["r"] is None


def test_correlate_edge_cases():
    assert correlate([1.0, 2.0], [3.0, 4.0]).r is None
    flat = correlate([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert flat.r is None and "same in every run" in flat.reason
    c = correlate([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert c.r == pytest.approx(0.8) and c.boot.lo <= 0.8 <= c.boot.hi
    assert correlate([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == c  # seeded: reproducible
    assert not math.isnan(c.boot.lo)


def test_a_correlation_resting_on_one_run_gets_no_interval():
    """Every gain 0 but one (students stuck on the majority class): r is that single run's doing,
    and a bootstrap over runs would dress it up as an interval that excludes 0."""
    from forge.workbench.sweep import correlate

    alignment = [0.30, 0.31, 0.32, 0.33, 0.34, 0.35]
    gain = [0.0, 0.0, 0.0, 0.05, 0.0, 0.0]
    c = correlate(alignment, gain)
    assert c.r == pytest.approx(float(np.corrcoef(alignment, gain)[0, 1]))
    assert c.boot is None and "2 distinct" in c.reason
