"""forge.eval.ocr_metrics against hand-worked edit distances and against rapidfuzz directly."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from forge.eval.ocr_metrics import (
    edit_similarity,
    exact_match,
    normalize_whitespace,
    normalized_edit_distance,
    ocr_metrics,
)


def test_kitten_sitting_by_hand() -> None:
    # k->s, e->i, +g: three edits over the longer string's 7 characters.
    assert normalized_edit_distance(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert edit_similarity(["kitten"], ["sitting"]) == pytest.approx(4 / 7)


def test_mean_over_pages_not_corpus_ratio() -> None:
    # "abc" vs "abd": 1/3; "" vs "xyzw": 4/4; identical: 0. Page mean (1/3 + 1 + 0) / 3, whereas a
    # corpus ratio would be 5 / 10.
    preds, refs = ["abc", "", "same"], ["abd", "xyzw", "same"]
    assert normalized_edit_distance(preds, refs) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert edit_similarity(preds, refs) == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_empty_strings_are_identical() -> None:
    assert normalized_edit_distance([""], [""]) == 0.0
    assert edit_similarity([""], [""]) == 1.0


def test_against_rapidfuzz_on_random_texts() -> None:
    rng = random.Random(0)
    alphabet = "ab c\n#$"
    preds = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(50)]
    refs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(50)]
    distances = [Levenshtein.distance(p, r) / max(len(p), len(r)) for p, r in zip(preds, refs)]
    assert normalized_edit_distance(preds, refs) == pytest.approx(sum(distances) / len(distances))
    assert edit_similarity(preds, refs) == pytest.approx(1 - sum(distances) / len(distances))


def test_exact_match_collapses_whitespace_only() -> None:
    assert normalize_whitespace("  # Title\n\n  body\ttext \n") == "# Title body text"
    preds = ["# Title\n\nbody text\n", "# title\n\nbody text", "# Title body text."]
    refs = ["# Title\nbody   text"] * 3
    # Only the first matches: case and punctuation are kept.
    assert exact_match(preds, refs) == pytest.approx(1 / 3)


def test_named_metrics_and_checks() -> None:
    scores = ocr_metrics(["kitten"], ["sitting"])
    assert list(scores) == ["normalized_edit_distance", "edit_similarity", "exact_match"]
    assert scores["normalized_edit_distance"] == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="unknown OCR metric"):
        ocr_metrics(["a"], ["a"], which=["cer"])
    with pytest.raises(ValueError, match="must pair up"):
        edit_similarity(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no references"):
        normalized_edit_distance([], [])
