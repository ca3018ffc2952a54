"""forge.eval.metrics against hand-worked values and against scikit-learn directly."""

from __future__ import annotations

import math
import random

import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from forge.eval.metrics import accuracy, classification_metrics, f1, macro_f1, mcc

# Confusion matrix worked by hand: TP=4 (idx 0,1,2,8), FN=1 (3), TN=3 (4,5,7), FP=2 (6,9).
REFS = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
PREDS = [1, 1, 1, 0, 0, 0, 1, 0, 1, 1]


def test_accuracy_by_hand() -> None:
    assert accuracy(PREDS, REFS) == pytest.approx(7 / 10)
    assert accuracy([2, 0, 1, 1], [2, 1, 1, 0]) == pytest.approx(0.5)  # multi-class


def test_f1_by_hand() -> None:
    precision, recall = 4 / 6, 4 / 5
    assert f1(PREDS, REFS) == pytest.approx(2 * precision * recall / (precision + recall))
    assert f1(PREDS, REFS) == pytest.approx(8 / 11)
    # F1 of class 0: TP0=3, FP0=1, FN0=2 -> 6/9
    assert f1(PREDS, REFS, pos_label=0) == pytest.approx(6 / 9)
    assert macro_f1(PREDS, REFS) == pytest.approx((8 / 11 + 6 / 9) / 2)


def test_mcc_by_hand() -> None:
    tp, tn, fp, fn = 4, 3, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert expected == pytest.approx(10 / math.sqrt(600))
    assert mcc(PREDS, REFS) == pytest.approx(expected)
    assert mcc(REFS, REFS) == pytest.approx(1.0)
    assert mcc([1 - r for r in REFS], REFS) == pytest.approx(-1.0)


def test_degenerate_predictions_score_zero_without_crashing() -> None:
    constant = [1] * len(REFS)
    assert mcc(constant, REFS) == 0.0  # undefined MCC -> 0, the GLUE convention
    assert f1([0] * len(REFS), REFS) == 0.0  # never predicts the positive class


def test_agrees_with_sklearn_on_random_labels() -> None:
    rng = random.Random(0)
    for _ in range(20):
        refs = [rng.randrange(2) for _ in range(57)]
        preds = [rng.randrange(2) for _ in range(57)]
        assert accuracy(preds, refs) == pytest.approx(accuracy_score(refs, preds))
        assert f1(preds, refs) == pytest.approx(f1_score(refs, preds))
        assert mcc(preds, refs) == pytest.approx(matthews_corrcoef(refs, preds))


def test_classification_metrics_order_types_and_errors() -> None:
    out = classification_metrics(PREDS, REFS, which=("mcc", "accuracy", "f1"))
    assert list(out) == ["mcc", "accuracy", "f1"]
    assert all(type(v) is float for v in out.values())
    assert out["accuracy"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="unknown classification metric"):
        classification_metrics(PREDS, REFS, which=("bleu",))
    with pytest.raises(ValueError, match="pair up"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
