"""forge.eval.olmocr_checks: olmocr's own tests, aggregated as olmocr.bench.benchmark aggregates.

Hand-built tests check the bookkeeping on numbers worked by hand (repeats, majority, per-file
means); the shipped olmOCR-pipeline outputs in sample_data check the whole path against the real
benchmark script, run as a subprocess on a symlink tree of the shared data.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from forge.data.ocr.olmocr_bench import BenchPage, BenchTest, load_olmocr_bench
from forge.eval.olmocr_checks import (
    page_pass_rate,
    read_candidate_folder,
    score_bench,
    score_candidate_folder,
)

from tests.unit.ocr_support import OCR_DATA, require_math  # noqa: F401 (a fixture)

SAMPLE = OCR_DATA / "olmocr-bench" / "sample_data"


def _test(source: str, **row) -> BenchTest:
    from olmocr.bench.tests import load_single_test

    return BenchTest(load_single_test({"pdf": "doc.pdf", "page": 1, **row}), source)


def _page(*tests: BenchTest, pdf: str = "doc.pdf", page: int = 1) -> BenchPage:
    return BenchPage(pdf, page, Path(pdf), tests)


PRESENT = dict(id="p", type="present", text="The quick brown fox")
ABSENT = dict(id="a", type="absent", text="Page 7 of 12")
ORDER = dict(id="o", type="order", before="First heading", after="Second heading")


def test_page_pass_rate_by_hand() -> None:
    page = _page(_test("a.jsonl", **PRESENT), _test("a.jsonl", **ABSENT), _test("a.jsonl", **ORDER))
    good = "# First heading\n\nThe quick brown fox.\n\n# Second heading\n"
    assert page_pass_rate(page, good) == 1.0
    # present fails, absent fails, order passes
    assert page_pass_rate(page, "First heading\nPage 7 of 12\nSecond heading") == pytest.approx(1 / 3)
    # present passes, absent passes, order fails (reversed)
    assert page_pass_rate(page.tests, "Second heading. The quick brown fox. First heading.") == pytest.approx(2 / 3)


def test_score_bench_repeats_majority_and_per_file_mean() -> None:
    # a.jsonl: present + absent on doc.pdf; b.jsonl: order on other.pdf.
    doc = _page(_test("a.jsonl", **PRESENT), _test("a.jsonl", **ABSENT))
    order = _test("b.jsonl", **{**ORDER, "pdf": "other.pdf"})
    other = _page(order, pdf="other.pdf")
    outputs = {
        # present passes 2 of 3 repeats (passes by majority), absent passes 3 of 3
        doc.key: ["The quick brown fox", "nothing", "The quick brown fox"],
        # order passes 1 of 2 repeats: a ratio of 0.5 is not a majority
        other.key: ["First heading then Second heading", "Second heading then First heading"],
    }
    score = score_bench([doc, other], outputs)
    assert score.by_type == pytest.approx({"absent": 1.0, "order": 0.5, "present": 2 / 3})
    assert score.passed_by_source == {"a.jsonl": (2, 2), "b.jsonl": (0, 1)}
    assert score.by_source == pytest.approx({"a.jsonl": 1.0, "b.jsonl": 0.0})
    assert score.overall == pytest.approx((1.0 + 0.0) / 2)  # per-file mean, not 2 of 3 tests
    assert score.n_tests == 3 and score.tests_by_type == {"absent": 1, "order": 1, "present": 1}


def test_a_test_that_raises_fails_and_is_reported() -> None:
    class Exploding:
        id, type, pdf, page = "boom", "present", "doc.pdf", 1

        def run(self, markdown: str):
            raise RuntimeError("no browser")

    page = _page(BenchTest(Exploding(), "a.jsonl"), _test("a.jsonl", **PRESENT))
    score = score_bench([page], {page.key: "The quick brown fox"})
    assert score.passed_by_source == {"a.jsonl": (1, 2)}
    assert len(score.errors) == 1 and "RuntimeError: no browser" in score.errors[0]


def test_missing_page_output_is_refused() -> None:
    page = _page(_test("a.jsonl", **PRESENT))
    with pytest.raises(ValueError, match="no markdown for 1 page"):
        score_bench([page], {})


def test_reads_the_benchmark_layout(tmp_path: Path) -> None:
    pages = [_page(_test("a.jsonl", **PRESENT), pdf="sub/x_pg3.pdf", page=2)]
    (tmp_path / "sub").mkdir()
    for repeat, text in [(2, "second"), (1, "first"), (10, "tenth")]:
        (tmp_path / pages[0].markdown_name(repeat)).write_text(text)
    (tmp_path / "sub" / "x_pg3_pg1_repeat1.md").write_text("another page")
    assert pages[0].markdown_name(2) == "sub/x_pg3_pg2_repeat2.md"
    assert read_candidate_folder(pages, tmp_path) == {("sub/x_pg3.pdf", 2): ["first", "second", "tenth"]}


@pytest.fixture(scope="module")
def sample_pages(require_math) -> list[BenchPage]:
    return load_olmocr_bench(SAMPLE)


def test_sample_blank_page_baseline(sample_pages: list[BenchPage]) -> None:
    blank = next(p for p in sample_pages if p.pdf == "blank_book_pg1.pdf")
    assert [(t.test.id, t.source) for t in blank.tests] == [("test1_blank", "blanks.jsonl")]
    assert page_pass_rate(blank, "") == 1.0
    assert page_pass_rate(blank, "eleven chars") == 0.0  # 11 alphanumerics; max_length is 10


def _benchmark_tree(tmp_path: Path) -> Path:
    """sample_data as symlinks, plus a second candidate whose repeats disagree: for every page,
    repeat 1 is olmOCR's output and repeat 2 is empty; every other page also gets repeat 3 = repeat 1."""
    tree = tmp_path / "bench"
    tree.mkdir()
    for entry in SAMPLE.iterdir():
        (tree / entry.name).symlink_to(entry)
    for n, md in enumerate(sorted((SAMPLE / "olmocr_pipeline").rglob("*_repeat1.md"))):
        target = tree / "mixed_repeats" / md.relative_to(SAMPLE / "olmocr_pipeline")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(md)
        target.with_name(target.name.replace("_repeat1", "_repeat2")).write_text("")
        if n % 2:
            target.with_name(target.name.replace("_repeat1", "_repeat3")).symlink_to(md)
    return tree


def _parse_summary(stdout: str) -> dict[str, dict]:
    """The 'Final Summary' block of olmocr.bench.benchmark, per candidate."""
    summary = stdout.split("Final Summary", 1)[1]
    parsed: dict[str, dict] = {}
    for line in summary.splitlines():
        if m := re.match(r"^(\S+)\s*: Average Score: ([\d.]+)%", line):
            current = parsed.setdefault(m[1], {"overall": m[2], "types": {}, "files": {}})
        elif m := re.match(r"^\s+(\w+)\s*: ([\d.]+)% average pass rate over (\d+) tests", line):
            current["types"][m[1]] = (m[2], int(m[3]))
        elif m := re.match(r"^\s+(\S+)\s*: [\d.]+% \((\d+)/(\d+) tests\)", line):
            current["files"][m[1]] = (int(m[2]), int(m[3]))
    return parsed


def test_sample_matches_olmocr_benchmark_script(sample_pages: list[BenchPage], tmp_path: Path) -> None:
    tree = _benchmark_tree(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "olmocr.bench.benchmark", "--dir", str(tree), "--bootstrap_samples", "10"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reference = _parse_summary(run.stdout)
    assert sorted(reference) == ["mixed_repeats", "olmocr_pipeline"]
    for candidate, expected in reference.items():
        ours = score_candidate_folder(sample_pages, tree / candidate)
        assert ours.errors == []
        assert f"{ours.overall * 100:0.1f}" == expected["overall"], candidate
        assert ours.passed_by_source == expected["files"], candidate
        assert {t: (f"{r * 100:0.1f}", ours.tests_by_type[t]) for t, r in ours.by_type.items()} == expected["types"]
    # olmOCR's own outputs: 120 tests (99 + 1 explicit baseline + 20 automatic ones).
    assert reference["olmocr_pipeline"]["files"] == {
        "baseline": (19, 20), "blanks.jsonl": (1, 1), "dataset.jsonl": (87, 99),
    }
