"""Text metrics for OCR: page markdown against reference markdown.

Plain functions over python lists, like `forge.eval.metrics`, so the eval loop, the VLM handlers and
offline scripts score pages the same way. Levenshtein comes from rapidfuzz (what olmocr itself
uses; fast C++, well kept), never a hand-written loop.

Strings are compared as given: OmniDocBench's text metric is a normalised edit distance over the
page's own characters, so stripping or lower-casing here would report a different number than the
benchmark. Only `exact_match` normalises, and it says how.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rapidfuzz.distance import Levenshtein

from forge.eval.metrics import _check_texts


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def edit_similarity(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean of 1 - Levenshtein distance / max(len(pred), len(ref)), in [0, 1]; higher is better.

    Per-page mean, not a corpus ratio: every page counts the same however long it is, which is how
    OCR benchmarks average (a long newspaper page would otherwise drown the short slides).
    Two empty strings are identical (similarity 1).
    """
    preds, refs = _check_texts(predictions, references)
    return _mean([Levenshtein.normalized_similarity(p, r) for p, r in zip(preds, refs)])


def normalized_edit_distance(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean of Levenshtein distance / max(len(pred), len(ref)), in [0, 1]; lower is better.

    OmniDocBench reports text quality this way (its "Text Edit"), so a number from here can be read
    beside its leaderboard when the markdown was produced the same way. Equals 1 - edit_similarity.
    """
    preds, refs = _check_texts(predictions, references)
    return _mean([Levenshtein.normalized_distance(p, r) for p, r in zip(preds, refs)])


def normalize_whitespace(text: str) -> str:
    """The normalisation `exact_match` applies: strip the ends and collapse every run of whitespace
    (spaces, tabs, newlines) to one space. Markdown's line breaks and a model's trailing newline
    carry no text, so they should not turn a correct page into a miss; case and punctuation do
    carry text, so they are kept."""
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after `normalize_whitespace` on both."""
    preds, refs = _check_texts(predictions, references)
    return _mean([float(normalize_whitespace(p) == normalize_whitespace(r)) for p, r in zip(preds, refs)])


#: name -> function, for `ocr_metrics(..., which=...)` and config-time name checks.
OCR_METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "edit_similarity": edit_similarity,
    "normalized_edit_distance": normalized_edit_distance,
    "exact_match": exact_match,
}


def ocr_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    which: Sequence[str] = ("normalized_edit_distance", "edit_similarity", "exact_match"),
) -> dict[str, float]:
    """Several named OCR text metrics at once, in the order asked for."""
    unknown = [name for name in which if name not in OCR_METRICS]
    if unknown:
        raise ValueError(f"unknown OCR metric(s) {unknown}; known: {sorted(OCR_METRICS)}")
    return {name: OCR_METRICS[name](predictions, references) for name in which}
