"""One page's olmOCR tests as one JSON string, and back to olmocr's own test objects.

Page tasks keep a page's answer in the `target` column, and RL rows hand that column to rewards
as `reference`: a string travels through `datasets`, collators and TRL untouched, a list of
olmocr objects does not. So a page whose answer is a set of olmOCR-bench tests (`task=olmocr_bench`,
or the tests `forge.data.ocr.synth_tests` derives for a synthetic page) carries them as JSON:

    {"tests": [{"source": "dataset.jsonl", "row": {<the JSONL row, as read>}}, ...]}

`row` is the benchmark's own JSONL row (what `olmocr.bench.tests.load_single_test` reads), not a
dump of the built object: olmocr normalises some fields while building, so only the row rebuilds
the same test. `source` is the group the test is scored in (its JSONL file, or "baseline"), which
`forge.eval.olmocr_checks.score_bench` needs for its per-file average.

Parsing builds olmocr test objects (a `math` test renders its LaTeX in headless Chromium), so
`load_page_tests` caches per distinct JSON string: a reward scoring many completions of the same
page builds its tests once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Iterable, Mapping

from forge.data.ocr.olmocr_bench import BenchPage, BenchTest

#: How many distinct pages' tests stay built; the hub release has about 1,400 pages.
_CACHE_PAGES = 4096


def page_tests_json(entries: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """The JSON of a page's tests from (source group, JSONL row) pairs, in the order given."""
    tests = [{"source": str(source), "row": dict(row)} for source, row in entries]
    if not tests:
        raise ValueError("a page needs at least one test")
    return json.dumps({"tests": tests}, ensure_ascii=False)


def bench_page_json(page: BenchPage) -> str:
    """The JSON of a loaded olmOCR-bench page's tests (every test keeps the row it was read from)."""
    missing = [t.test.id for t in page.tests if t.row is None]
    if missing:
        raise ValueError(f"{page.pdf} page {page.page}: tests {missing[:3]} carry no JSONL row; "
                         "load the page with forge.data.ocr.olmocr_bench.load_olmocr_bench")
    return page_tests_json((t.source, t.row) for t in page.tests)


def _entries(text: str) -> list[dict]:
    """The parsed `tests` list, or a ValueError saying how the string is not page-tests JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not page-tests JSON ({error.msg} at column {error.colno}): {text[:80]!r}") from None
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, list) or not tests:
        raise ValueError(f'page-tests JSON is an object with a non-empty "tests" list, got {text[:80]!r}')
    for i, entry in enumerate(tests):
        if not (isinstance(entry, dict) and isinstance(entry.get("source"), str) and isinstance(entry.get("row"), dict)):
            raise ValueError(f'test {i} of page-tests JSON must be {{"source": str, "row": object}}, got {entry!r:.80}')
    return tests


@lru_cache(maxsize=_CACHE_PAGES)
def load_page_tests(text: str) -> tuple[BenchTest, ...]:
    """olmocr's test objects for one page's JSON, built by olmocr's loader; cached per string.

    Raises ValueError naming the test when the string is malformed or olmocr refuses a row.
    """
    from olmocr.bench.tests import load_single_test

    built = []
    for entry in _entries(text):
        row = entry["row"]
        try:
            test = load_single_test(row)
        except Exception as error:  # olmocr's ValidationError, a TypeError for a stray field
            raise ValueError(f"olmocr cannot build test {row.get('id')!r} ({type(error).__name__}: {error})") from None
        built.append(BenchTest(test, entry["source"], row))
    return tuple(built)
