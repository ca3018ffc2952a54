"""olmOCR-bench pass rates as eval-loop metrics: predictions against references that hold tests.

A page task whose references are page-tests JSON (`forge.data.ocr.page_tests`) is scored by running
each page's olmocr tests on its predicted markdown and aggregating exactly as
`forge.eval.olmocr_checks.score_bench` (and so `olmocr.bench.benchmark`) does: `pass_rate` is the
mean of the per-group (per-JSONL-file) pass rates, `pass_rate/<type>` the mean over that type's
tests. Only the types the references hold are reported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from forge.data.ocr.olmocr_bench import BenchPage
from forge.data.ocr.page_tests import load_page_tests
from forge.eval.metrics import _check_texts
from forge.eval.olmocr_checks import BenchScore, score_bench

logger = logging.getLogger(__name__)

#: The headline metric, and the prefix of the per-type ones.
PASS_RATE = "pass_rate"
#: olmOCR-bench's test types (olmocr's TestType), for handlers that list their metric names.
TEST_TYPES = ("present", "absent", "order", "table", "math", "baseline")


def pass_rate_names() -> tuple[str, ...]:
    """Every metric name `pass_rate_metrics` can return, the headline first."""
    return (PASS_RATE,) + tuple(f"{PASS_RATE}/{t}" for t in TEST_TYPES)


def score_references(predictions: Sequence[str], references: Sequence[str]) -> BenchScore:
    """`score_bench` with one page per (prediction, page-tests JSON) pair.

    Pages are keyed by their position, not by (pdf, page): the same page twice in an eval set is
    two pages here, not two repeats of one.
    """
    preds, refs = _check_texts(predictions, references)
    if not refs:
        raise ValueError("no references to score")
    pages, outputs = [], {}
    for i, (prediction, reference) in enumerate(zip(preds, refs)):
        tests = load_page_tests(reference)
        first = tests[0].test
        page = BenchPage(f"{first.pdf}#{i}", first.page, Path(first.pdf), tests)
        pages.append(page)
        outputs[page.key] = prediction
    return score_bench(pages, outputs)


def pass_rate_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{"pass_rate": overall, "pass_rate/<type>": ...} as `score_bench` reports them (fractions)."""
    score = score_references(predictions, references)
    if score.errors:  # counted as failures, as olmocr's script does; a broken browser shows here
        logger.warning("%d olmocr test run(s) raised and count as failed, e.g. %s", len(score.errors), score.errors[0])
    return {PASS_RATE: score.overall, **{f"{PASS_RATE}/{t}": rate for t, rate in score.by_type.items()}}
