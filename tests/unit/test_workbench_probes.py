"""forge.workbench.probes: a label planted linearly in one layer is recovered there and nowhere else;
control labels are a function of the type; selectivity separates the real task from its control."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from forge.workbench.probes import (
    ProbeResult,
    choose_c,
    control_labels,
    fit_probe,
    probe_layers,
    selectivity,
)

N_TRAIN, N_EVAL, WIDTH = 400, 400, 16


def planted_layers(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """Three layers of noise; layer 1 also carries the label along a random direction (margin 2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N_TRAIN + N_EVAL)
    direction = rng.standard_normal(WIDTH)
    direction /= np.linalg.norm(direction)
    layers = [rng.standard_normal((N_TRAIN + N_EVAL, WIDTH)) for _ in range(3)]
    layers[1] = layers[1] + np.outer(4.0 * y - 2.0, direction)
    return ([x[:N_TRAIN] for x in layers], y[:N_TRAIN], [x[N_TRAIN:] for x in layers], y[N_TRAIN:])


def test_probe_recovers_a_planted_label_and_scores_chance_on_noise():
    train, y_train, evals, y_eval = planted_layers()
    planted = fit_probe(train[1], y_train, evals[1], y_eval, seed=0, metric=f1_score)
    # the Bayes accuracy at margin 2 is Φ(2) = 0.977
    assert planted.accuracy > 0.9 and planted.train_accuracy > 0.9
    assert planted.metric > 0.9 and planted.chosen_c in (0.01, 0.1, 1.0, 10.0, 100.0)
    # the reported scores are those of a probe refit on all of train with the chosen C
    refit = make_pipeline(StandardScaler(), LogisticRegression(C=planted.chosen_c, max_iter=5000))
    predicted = refit.fit(train[1], y_train).predict(evals[1])
    assert planted.accuracy == pytest.approx(np.mean(predicted == y_eval))
    assert planted.metric == pytest.approx(f1_score(y_eval, predicted))
    noise = fit_probe(train[0], y_train, evals[0], y_eval, seed=0)
    assert noise.accuracy < 0.65 and noise.metric is None
    # 400 eval examples: chance accuracy has sd 0.025, so 0.65 is 6 sd above 0.5


def test_probe_metric_is_the_given_function_on_eval_predictions():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 4))
    y = (x[:, 0] + 0.8 * rng.standard_normal(200) > 0.7).astype(int)  # imbalanced, noisy
    result = fit_probe(x[:120], y[:120], x[120:], y[120:], seed=1, metric=f1_score)
    assert 0.0 < result.metric < 1.0 and result.metric != pytest.approx(result.accuracy)
    accuracy_only = fit_probe(x[:120], y[:120], x[120:], y[120:], seed=1)
    assert accuracy_only.metric is None and accuracy_only.chosen_c in (0.01, 0.1, 1.0, 10.0, 100.0)


def test_c_is_chosen_on_held_out_data_with_ties_to_the_smaller_c():
    train, y_train, _, _ = planted_layers()
    # A single candidate is always chosen; identical candidates tie and the smaller wins.
    assert choose_c(train[1], y_train, seed=0, Cs=(3.0,)) == 3.0
    # Pure noise with a very strong penalty: every C ≤ 1e-6 predicts the majority class, same score.
    assert choose_c(train[0], y_train, seed=0, Cs=(1e-6, 1e-7, 1e-8)) == 1e-8
    with pytest.raises(ValueError, match="two classes"):
        fit_probe(train[1], np.zeros(N_TRAIN), train[1], np.zeros(N_TRAIN), seed=0)


def test_control_labels_are_a_function_of_the_type():
    types = ["the", "cat", "the", 7, "sat", 7, ("a", 1), "the"]
    labels = control_labels(types, 3, seed=0)
    assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1, 2}
    assert labels[0] == labels[2] == labels[7] and labels[3] == labels[5]
    # the same type gets the same label in a separate call (train vs eval), whatever the order
    again = control_labels(["sat", ("a", 1), "cat", "the", 7], 3, seed=0)
    assert again.tolist() == [labels[4], labels[6], labels[1], labels[0], labels[3]]
    many = list(range(2000))
    spread = np.bincount(control_labels(many, 4, seed=0), minlength=4) / 2000
    assert np.all(np.abs(spread - 0.25) < 0.04)  # uniform by default
    assert control_labels(many, 4, seed=1).tolist() != control_labels(many, 4, seed=0).tolist()
    skewed = np.bincount(control_labels(many, 2, seed=0, probabilities=[9, 1]), minlength=2) / 2000
    assert skewed[0] == pytest.approx(0.9, abs=0.03)
    with pytest.raises(ValueError, match="probabilities"):
        control_labels(many, 2, seed=0, probabilities=[1.0])


def test_selectivity_is_real_minus_control_accuracy():
    real, control = ProbeResult(0.91, None, 1.0, 0.95), ProbeResult(0.6, None, 0.1, 0.9)
    assert selectivity(real, control) == pytest.approx(0.31)


def test_probe_layers_finds_the_planted_layer_and_its_selectivity():
    train, y_train, evals, y_eval = planted_layers()
    rng = np.random.default_rng(5)
    # 40 word types shared by train and eval, unrelated to the features: the control task cannot be
    # read from any layer, so control accuracy is about chance.
    types_train, types_eval = rng.integers(0, 40, N_TRAIN), rng.integers(0, 40, N_EVAL)
    calls = []
    rows = probe_layers(train, y_train, evals, y_eval, seed=0, control_types_train=types_train,
                        control_types_eval=types_eval, progress=lambda done, total: calls.append((done, total)))
    assert [r["layer"] for r in rows] == [0, 1, 2] and [r["depth"] for r in rows] == [0.0, 0.5, 1.0]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert rows[1]["accuracy"] > 0.9 and rows[0]["accuracy"] < 0.65 and rows[2]["accuracy"] < 0.65
    assert rows[1]["selectivity"] > 0.2
    for row in rows:
        assert row["selectivity"] == pytest.approx(row["accuracy"] - row["control_accuracy"])
        assert row["control_accuracy"] < 0.65 and row["metric"] is None
    plain = probe_layers(train[:1], y_train, evals[:1], y_eval, seed=0)
    assert plain[0]["depth"] == 0.0 and plain[0]["selectivity"] is None
    assert plain[0]["accuracy"] == pytest.approx(rows[0]["accuracy"])
    with pytest.raises(ValueError, match="both train and eval"):
        probe_layers(train, y_train, evals, y_eval, seed=0, control_types_train=types_train)
