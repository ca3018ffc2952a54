"""Metric functions shared by the task handlers.

Plain functions over python lists, so handlers, the eval loop and offline analysis scripts all
score the same way. Classification metrics come from scikit-learn, text metrics (BLEU, chrF) from
sacrebleu, and never from the `evaluate` package: it downloads metric scripts at run time, which
breaks offline clusters. Later tasks add more text metrics (edit similarity) here as plain functions.
"""

from __future__ import annotations

from typing import Callable, Sequence

from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _check(predictions: Sequence, references: Sequence) -> None:
    """Fail loudly on mismatched lengths; sklearn's message does not say which run broke."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not references:
        raise ValueError("no references to score (empty eval set?)")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Fraction of exact label matches."""
    _check(predictions, references)
    return float(accuracy_score(references, predictions))


def f1(predictions: Sequence[int], references: Sequence[int], pos_label: int = 1) -> float:
    """Binary F1 of the positive class (GLUE's F1 for QQP / MRPC).

    zero_division=0: a model that never predicts the positive class scores 0 instead of warning,
    which is what happens early in training and must not crash or spam logs.
    """
    _check(predictions, references)
    return float(
        f1_score(references, predictions, average="binary", pos_label=pos_label, zero_division=0)
    )


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes present in either list."""
    _check(predictions, references)
    return float(f1_score(references, predictions, average="macro", zero_division=0))


def mcc(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation (CoLA's GLUE metric): robust to CoLA's 70/30 class imbalance.

    sklearn returns 0.0 when it is undefined (a constant prediction), which is the convention GLUE
    leaderboards use.
    """
    _check(predictions, references)
    return float(matthews_corrcoef(references, predictions))


#: name -> function, for `classification_metrics(..., which=...)` and config-time name checks.
CLASSIFICATION_METRICS: dict[str, Callable[[Sequence[int], Sequence[int]], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "mcc": mcc,
}


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], which: Sequence[str]
) -> dict[str, float]:
    """Several named classification metrics at once, in the order asked for."""
    unknown = [name for name in which if name not in CLASSIFICATION_METRICS]
    if unknown:
        raise ValueError(
            f"unknown classification metric(s) {unknown}; known: {sorted(CLASSIFICATION_METRICS)}"
        )
    preds = [int(p) for p in predictions]
    refs = [int(r) for r in references]
    return {name: CLASSIFICATION_METRICS[name](preds, refs) for name in which}


# ---- text metrics (translation) ---------------------------------------------------------------


def _check_texts(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    _check(predictions, references)
    return [str(p) for p in predictions], [str(r) for r in references]


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exp smoothing), 0-100 as sacrebleu reports.

    One reference per prediction. Corpus-level, not an average of sentence scores: that is the
    number papers report and what WMT-style comparisons mean by BLEU. sacrebleu is imported here,
    not at module import, so classification runs do not pay for it.
    """
    import sacrebleu

    preds, refs = _check_texts(predictions, references)
    return float(sacrebleu.corpus_bleu(preds, [refs]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2, no word n-grams), 0-100.

    Character-level, so it still rewards a near-miss inflection that BLEU's word n-grams miss,
    which matters for French morphology and for small models early in training.
    """
    import sacrebleu

    preds, refs = _check_texts(predictions, references)
    return float(sacrebleu.corpus_chrf(preds, [refs]).score)


#: name -> function, for `translation_metrics(..., which=...)`.
TRANSLATION_METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "bleu": bleu,
    "chrf": chrf,
}


def translation_metrics(
    predictions: Sequence[str], references: Sequence[str], which: Sequence[str] = ("bleu", "chrf")
) -> dict[str, float]:
    """Several named text metrics at once, in the order asked for."""
    unknown = [name for name in which if name not in TRANSLATION_METRICS]
    if unknown:
        raise ValueError(
            f"unknown translation metric(s) {unknown}; known: {sorted(TRANSLATION_METRICS)}"
        )
    return {name: TRANSLATION_METRICS[name](predictions, references) for name in which}
