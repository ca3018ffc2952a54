"""Linear probes per layer, with control-task selectivity.

A probe asks whether a property is linearly readable from a layer's features: an L2 logistic
regression (scikit-learn's, lbfgs; nothing to hand-write) on standardised features, its C chosen on
a held-out part of the training set and then refit on all of it. High probe accuracy alone can mean
the probe memorised rather than the layer encoded, so each layer is also probed on a control task
(Hewitt & Liang 2019): the same inputs with labels that depend only on the input's *type*, assigned at
random. Selectivity = real accuracy − control accuracy; a good layer scores high on the real task and
low on its control.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from forge.workbench.cka import as_matrix

Metric = Callable[[np.ndarray, np.ndarray], float]
DEFAULT_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
MAX_ITER = 5000


@dataclass(frozen=True)
class ProbeResult:
    """Scores on the evaluation set of the probe refit on all training data with `chosen_c`;
    `metric` is None when no metric function was given."""

    accuracy: float
    metric: Optional[float]
    chosen_c: float
    train_accuracy: float


def _probe(c: float, seed: int) -> Pipeline:
    # l1_ratio=0 is the L2 penalty (scikit-learn 1.8 deprecated `penalty`); the scaler is refit with
    # the probe, so it only ever sees the data the probe is fitted on.
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, l1_ratio=0.0, solver="lbfgs",
                                                              max_iter=MAX_ITER, random_state=seed))


def _held_out_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held-out) of a seeded split of the training set, stratified when every class
    has at least two examples and both parts can hold one of each class."""
    classes, counts = np.unique(y, return_counts=True)
    n_held = int(np.ceil(fraction * len(y)))
    stratify = y if counts.min() >= 2 and len(classes) <= min(n_held, len(y) - n_held) else None
    return train_test_split(np.arange(len(y)), test_size=n_held, random_state=seed, stratify=stratify)


def _score(y_true: np.ndarray, y_pred: np.ndarray, metric: Optional[Metric]) -> float:
    return float(metric(y_true, y_pred)) if metric is not None else float(np.mean(y_true == y_pred))


def choose_c(x: np.ndarray, y: np.ndarray, *, seed: int, Cs: Sequence[float] = DEFAULT_CS,
             held_out_fraction: float = 0.2, metric: Optional[Metric] = None) -> float:
    """The C whose probe scores best on a held-out part of (x, y): by `metric` when given (the task's
    own, e.g. F1 for an imbalanced pair task), else accuracy. Ties go to the smaller C, the more
    regularised, less expressive probe."""
    fit, held = _held_out_split(y, held_out_fraction, seed)
    best_c, best_score = None, -np.inf
    for c in sorted(Cs):
        probe = _probe(c, seed).fit(x[fit], y[fit])
        score = _score(y[held], probe.predict(x[held]), metric)
        if score > best_score:
            best_c, best_score = c, score
    return float(best_c)


def fit_probe(train_x: np.ndarray, train_y: Sequence, eval_x: np.ndarray, eval_y: Sequence, *, seed: int,
              Cs: Sequence[float] = DEFAULT_CS, held_out_fraction: float = 0.2,
              metric: Optional[Metric] = None) -> ProbeResult:
    """Fit an L2 logistic-regression probe (C chosen on a held-out split of train, then refit on all
    of train) and score it on eval."""
    x, y = as_matrix(train_x), np.asarray(train_y)
    ex, ey = as_matrix(eval_x), np.asarray(eval_y)
    if len(x) != len(y) or len(ex) != len(ey):
        raise ValueError(f"features and labels differ in length: train {len(x)} vs {len(y)}, "
                         f"eval {len(ex)} vs {len(ey)}")
    if len(np.unique(y)) < 2:
        raise ValueError("a probe needs at least two classes in the training labels")
    c = choose_c(x, y, seed=seed, Cs=Cs, held_out_fraction=held_out_fraction, metric=metric)
    probe = _probe(c, seed).fit(x, y)
    predicted = probe.predict(ex)
    return ProbeResult(accuracy=float(np.mean(predicted == ey)),
                       metric=_score(ey, predicted, metric) if metric is not None else None,
                       chosen_c=c, train_accuracy=float(np.mean(probe.predict(x) == y)))


def _unit_interval(word_type: Hashable, seed: int) -> float:
    """A number in [0, 1) that depends only on (repr(type), seed): stable across processes, unlike
    hash(), which Python salts per process for strings."""
    digest = hashlib.blake2b(f"{seed}\x00{word_type!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def control_labels(word_types: Sequence[Hashable], num_labels: int, seed: int,
                   probabilities: Optional[Sequence[float]] = None) -> np.ndarray:
    """Control-task labels (Hewitt & Liang 2019): each distinct type gets one random label, so
    examples of the same type share it, whichever call (train or eval) they come in.

    The label is a function of (type, seed) alone, not of the order types are met, so train and eval
    labels agree without sharing state. `probabilities` (one per label) samples labels from the real
    task's label distribution, as the paper does; uniform when None. Types should have a stable repr
    (ints, strings, tuples of them).

    For sentence-level tasks there is no word type; the caller passes a key that stands for the
    example's identity, and that choice sets how memorisable the control task is: the first real
    token id makes types recur (a probe can learn them), a hash of the text makes every example its
    own type (control accuracy on unseen eval examples is then chance, and selectivity is accuracy
    above chance).
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be at least 1, got {num_labels}")
    weights = np.full(num_labels, 1.0 / num_labels) if probabilities is None else np.asarray(probabilities, float)
    if len(weights) != num_labels or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"probabilities must be {num_labels} non-negative weights, got {probabilities!r}")
    edges = np.cumsum(weights / weights.sum())
    labels = {t: min(int(np.searchsorted(edges, _unit_interval(t, seed), side="right")), num_labels - 1)
              for t in dict.fromkeys(word_types)}
    return np.array([labels[t] for t in word_types], dtype=np.int64)


def selectivity(real: ProbeResult, control: ProbeResult) -> float:
    """Real-task accuracy minus control-task accuracy (Hewitt & Liang 2019)."""
    return real.accuracy - control.accuracy


def probe_layers(layers_train: Sequence[np.ndarray], y_train: Sequence, layers_eval: Sequence[np.ndarray],
                 y_eval: Sequence, *, seed: int, control_types_train: Optional[Sequence[Hashable]] = None,
                 control_types_eval: Optional[Sequence[Hashable]] = None, metric: Optional[Metric] = None,
                 Cs: Sequence[float] = DEFAULT_CS, num_control_labels: Optional[int] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> list[dict]:
    """Probe every layer: one dict per layer with layer, depth (layer / (L−1) in [0, 1], so models of
    different depths share an axis), accuracy, metric, chosen_c, and, when control types are given,
    control_accuracy and selectivity (else None). Control labels use as many labels as the real task
    has (or `num_control_labels`), drawn with its training label frequencies. `progress(done, total)`
    is called after each layer."""
    if len(layers_train) != len(layers_eval) or not layers_train:
        raise ValueError(f"need the same, non-zero number of train and eval layers: "
                         f"{len(layers_train)} vs {len(layers_eval)}")
    if (control_types_train is None) != (control_types_eval is None):
        raise ValueError("pass control types for both train and eval, or for neither")
    y_train, y_eval = np.asarray(y_train), np.asarray(y_eval)
    control = None
    if control_types_train is not None:
        _, counts = np.unique(y_train, return_counts=True)
        k = num_control_labels or len(counts)
        freqs = counts if k == len(counts) else None
        control = (control_labels(control_types_train, k, seed, freqs),
                   control_labels(control_types_eval, k, seed, freqs))
    results, depth_den = [], max(len(layers_train) - 1, 1)
    for layer, (train_x, eval_x) in enumerate(zip(layers_train, layers_eval)):
        real = fit_probe(train_x, y_train, eval_x, y_eval, seed=seed, Cs=Cs, metric=metric)
        row = {"layer": layer, "depth": layer / depth_den, "accuracy": real.accuracy, "metric": real.metric,
               "chosen_c": real.chosen_c, "control_accuracy": None, "selectivity": None}
        if control is not None:
            ctrl = fit_probe(train_x, control[0], eval_x, control[1], seed=seed, Cs=Cs)
            row.update(control_accuracy=ctrl.accuracy, selectivity=selectivity(real, ctrl))
        results.append(row)
        if progress is not None:
            progress(layer + 1, len(layers_train))
    return results
