"""olmOCR-bench scoring: a page's markdown against its unit tests, with olmocr's own checks.

Each test is olmocr's object (`olmocr.bench.tests`), run as `test.run(markdown)`; nothing here
re-implements a check. What this module adds is the bookkeeping `olmocr.bench.benchmark` does in
its `main()` (which cannot be called as a function), reproduced step for step so the numbers match
what the script prints:

- a test run on several repeats of a page scores passes / repeats; a test that raises counts as a
  failed repeat (the script logs the error and carries on);
- a test type's pass rate is the mean of those per-test ratios;
- a test *passes* when more than half its repeats pass; each group (a JSONL file, or "baseline"
  for the automatic baseline tests) scores passed / tests;
- the overall score is the unweighted mean of the group scores, so a small JSONL file weighs as
  much as a large one ("average of per-JSONL scores").

`page_pass_rate` is the per-page number, the fraction of one page's tests one markdown passes:
the `olmocr_checks` reward for RL.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

if TYPE_CHECKING:
    from forge.data.ocr.olmocr_bench import BenchPage, BenchTest

#: `BenchPage.markdown_name`'s layout, read back.
_MARKDOWN_NAME = re.compile(r"^(?P<base>.+)_pg(?P<page>\d+)_repeat(?P<repeat>\d+)\.md$")
#: One markdown per page, or several repeats of it.
PageOutputs = Mapping[tuple[str, int], Union[str, Sequence[str]]]


@dataclass(frozen=True)
class TestOutcome:
    """One test on one markdown: passed or not, olmocr's explanation, and whether it raised."""

    test_id: str
    type: str
    source: str
    passed: bool
    explanation: str
    raised: bool = False


@dataclass(frozen=True)
class BenchScore:
    """A benchmark result in the shape `olmocr.bench.benchmark` prints it (fractions, not %)."""

    overall: float  # mean of the per-group pass rates
    by_type: dict[str, float]  # mean over a type's tests of passes / repeats
    by_source: dict[str, float]  # passed / tests per JSONL file (and "baseline")
    tests_by_type: dict[str, int]
    passed_by_source: dict[str, tuple[int, int]]  # (passed, tests)
    n_tests: int
    errors: list[str] = field(default_factory=list)  # tests that raised, with the message


def run_test(bench_test: "BenchTest", markdown: str) -> TestOutcome:
    """Run one olmocr test; an exception is a failure whose explanation is the error (as the script
    counts it), flagged `raised` so a broken environment (no Chromium for math) is visible."""
    test = bench_test.test
    try:
        passed, explanation = test.run(markdown)
        return TestOutcome(test.id, test.type, bench_test.source, bool(passed), explanation)
    except Exception as error:
        return TestOutcome(test.id, test.type, bench_test.source, False, f"{type(error).__name__}: {error}", True)


def run_tests(tests: Sequence["BenchTest"], markdown: str) -> list[TestOutcome]:
    """Every test of a page on one markdown, in the page's order."""
    return [run_test(t, markdown) for t in tests]


def page_pass_rate(page: Union["BenchPage", Sequence["BenchTest"]], markdown: str) -> float:
    """Fraction of one page's tests (baseline included) that `markdown` passes, in [0, 1]."""
    tests = page.tests if hasattr(page, "tests") else page
    if not tests:
        raise ValueError("a page with no tests has no pass rate")
    outcomes = run_tests(tests, markdown)
    return sum(o.passed for o in outcomes) / len(outcomes)


def _repeats(outputs: PageOutputs, page: "BenchPage") -> list[str]:
    value = outputs.get(page.key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _test_ratios(
    pages: Sequence["BenchPage"], outputs: PageOutputs
) -> tuple[list[tuple["BenchTest", float]], list[str]]:
    """(test, passes / repeats) for every test, and the errors of tests that raised."""
    missing = [f"{p.pdf} page {p.page}" for p in pages if not _repeats(outputs, p)]
    if missing:
        raise ValueError(f"no markdown for {len(missing)} page(s): {missing[:5]}; "
                         "olmocr.bench.benchmark refuses a candidate with missing pages")
    ratios, errors = [], []
    for page in pages:
        repeats = _repeats(outputs, page)
        for bench_test in page.tests:
            outcomes = [run_test(bench_test, markdown) for markdown in repeats]
            errors += [f"{o.test_id} on {page.pdf} page {page.page}: {o.explanation}" for o in outcomes if o.raised]
            ratios.append((bench_test, sum(o.passed for o in outcomes) / len(outcomes)))
    return ratios, errors


def score_bench(pages: Sequence["BenchPage"], outputs: PageOutputs) -> BenchScore:
    """Score markdown for every page (keyed by `page.key`) as `olmocr.bench.benchmark` does."""
    if not pages:
        raise ValueError("no pages to score")
    ratios, errors = _test_ratios(pages, outputs)
    type_ratios: dict[str, list[float]] = defaultdict(list)
    source_passes: dict[str, list[bool]] = defaultdict(list)
    for bench_test, ratio in ratios:
        type_ratios[bench_test.test.type].append(ratio)
        source_passes[bench_test.source].append(ratio > 0.5)  # majority of repeats
    by_source = {s: sum(p) / len(p) for s, p in sorted(source_passes.items())}
    return BenchScore(
        overall=sum(by_source.values()) / len(by_source),
        by_type={t: sum(r) / len(r) for t, r in sorted(type_ratios.items())},
        by_source=by_source,
        tests_by_type={t: len(r) for t, r in sorted(type_ratios.items())},
        passed_by_source={s: (sum(p), len(p)) for s, p in sorted(source_passes.items())},
        n_tests=len(ratios),
        errors=errors,
    )


def read_candidate_folder(pages: Sequence["BenchPage"], folder: str | Path) -> dict[tuple[str, int], list[str]]:
    """A candidate's markdown in the benchmark's layout, every repeat of every page, in repeat order.

    Files are `<pdf path without .pdf>_pg<page>_repeat<N>.md` below `folder` (sub-folders mirror
    pdfs/). Pages without a file are absent from the result; files for no page are ignored.
    """
    folder = Path(folder)
    wanted = {page.key for page in pages}
    found: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    for path in folder.rglob("*.md"):
        match = _MARKDOWN_NAME.match(path.relative_to(folder).as_posix())
        if match:
            key = (f"{match['base']}.pdf", int(match['page']))
            if key in wanted:
                found[key].append((int(match["repeat"]), path))
    return {key: [p.read_text(encoding="utf-8") for _, p in sorted(files)] for key, files in found.items()}


def score_candidate_folder(pages: Sequence["BenchPage"], folder: str | Path) -> BenchScore:
    """`score_bench` on a folder of markdown files laid out as `olmocr.bench.benchmark` expects."""
    return score_bench(pages, read_candidate_folder(pages, folder))


def math_renderer_problem() -> Optional[str]:
    """None when olmocr can render KaTeX (headless Chromium through Playwright), else why not.

    Without it every math test fails with a browser error rather than a wrong formula; callers
    (and the tests) check this first so that is reported, never mistaken for a model's failure.
    """
    try:
        from olmocr.bench.katex.render import render_equation

        rendered = render_equation(r"x^2", use_cache=False)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    if rendered is None or rendered.error:
        return f"KaTeX rendering failed: {getattr(rendered, 'error', None)}"
    return None
