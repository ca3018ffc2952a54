"""olmOCR-bench as pages: each (PDF, page) with the olmocr unit tests that belong to it.

A bench folder is what `olmocr.bench.benchmark --dir` reads: `*.jsonl` test files beside a `pdfs/`
folder (the hub release keeps both under `bench_data/`). The tests are olmocr's own objects, built
by its loader, so `forge.eval.olmocr_checks` scores with olmocr's code and nothing re-implemented.
Like the benchmark script, every PDF without a `baseline` test gets one on page 1 (not blank, not
endlessly repeating, no disallowed characters); it is scored as its own group, "baseline".

Bad folders fail early with one `ConfigError` listing every problem (see `olmocr_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from PIL import Image

from forge.config.errors import ProblemCollector
from forge.data.ocr.olmocr_rows import (
    TestRow,
    check_fields,
    check_row_targets,
    count_pages,
    read_rows,
    valid_test_types,
)
from forge.data.ocr.pdf import DEFAULT_LONGEST_SIDE, render_pdf_page

if TYPE_CHECKING:
    from olmocr.bench.tests import BasePDFTest

#: The group name olmocr's benchmark files automatic baseline tests under (its "Results by JSONL").
BASELINE_SOURCE = "baseline"
#: Where the hub release keeps its bench folder.
HUB_REPO_ID = "allenai/olmOCR-bench"
HUB_SUBDIR = "bench_data"


@dataclass(frozen=True)
class BenchTest:
    """One olmocr test and the group it is scored in: its JSONL file's name, or "baseline".

    `row` is the JSONL row the test was built from, as read (olmocr normalises some fields while
    building, so the row, not the object, is what rebuilds the same test elsewhere: see
    `forge.data.ocr.page_tests`); None for a test built by hand."""

    test: "BasePDFTest"
    source: str
    row: Optional[Mapping[str, Any]] = field(default=None, compare=False)


@dataclass(frozen=True)
class BenchPage:
    """One PDF page to transcribe, with every test that checks its markdown."""

    pdf: str  # path relative to pdfs/, as olmocr names it, e.g. "headers_footers/x_pg1.pdf"
    page: int  # 1-based
    pdf_path: Path
    tests: tuple[BenchTest, ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.pdf, self.page)

    def markdown_name(self, repeat: int = 1) -> str:
        """The file name `olmocr.bench.benchmark` looks for in a candidate folder."""
        return f"{self.pdf[: -len('.pdf')]}_pg{self.page}_repeat{repeat}.md"

    def render(self, *, longest_side: Optional[int] = DEFAULT_LONGEST_SIDE, dpi: Optional[float] = None,
               max_pixels: Optional[int] = None) -> Image.Image:
        """The page as an RGB image; see `forge.data.ocr.pdf.render_pdf_page` for the resolution."""
        return render_pdf_page(self.pdf_path, self.page, longest_side=longest_side, dpi=dpi, max_pixels=max_pixels)


def _bench_files(bench_dir: Path, problems: ProblemCollector) -> tuple[list[Path], Path]:
    """The folder's JSONL files and its pdfs/ folder; raises at once if the folder is unusable."""
    fix = f"point at a folder holding *.jsonl test files and a pdfs/ folder (the hub release's {HUB_SUBDIR}/)"
    if not bench_dir.is_dir():
        problems.add("olmocr_bench.dir", "no such folder", value=str(bench_dir), fix=fix)
        problems.raise_if_any()
    jsonl_files = sorted(bench_dir.glob("*.jsonl"))
    pdf_dir = bench_dir / "pdfs"
    if not jsonl_files:
        problems.add("olmocr_bench.dir", "no *.jsonl test files in this folder", value=str(bench_dir), fix=fix)
    if not pdf_dir.is_dir():
        problems.add("olmocr_bench.dir", "no pdfs/ folder in this folder", value=str(bench_dir), fix=fix)
    problems.raise_if_any()
    return jsonl_files, pdf_dir


def _build_test(row: TestRow, problems: ProblemCollector) -> Optional["BasePDFTest"]:
    """olmocr's own test object for a row; its field checks (and math rendering) become problems."""
    from olmocr.bench.tests import load_single_test

    try:
        return load_single_test(row.data)
    except Exception as error:  # ValidationError, a missing type field (TypeError), a browser failure
        fix = "correct the row's fields for its test type (see olmocr.bench.tests)"
        if row.data.get("type") == "math":
            fix = ("math tests render LaTeX with KaTeX in headless Chromium through Playwright; run "
                   ".ci/install.sh (it links Debian's chromium-headless-shell where Playwright looks)")
        problems.add(row.where, f"olmocr cannot build this test ({type(error).__name__}: {error})", fix=fix)
        return None


def _uncovered_pages(
    pdf_dir: Path, page_counts: dict[str, int], covered: set[tuple[str, int]], problems: ProblemCollector
) -> None:
    """`olmocr.bench.benchmark` stops at a page with no test at all; so does loading."""
    for pdf, count in page_counts.items():
        for page in range(1, count + 1):
            if (pdf, page) not in covered:
                problems.add(str(pdf_dir / pdf), f"page {page} of {count} has no test",
                             fix="add a test for it (olmocr.bench.benchmark refuses such a folder)")


def _baseline_tests(page_counts: dict[str, int], tests: list[BenchTest]) -> list[BenchTest]:
    """One automatic baseline test on page 1 of every PDF that has none, named as olmocr names it."""
    from olmocr.bench.tests import BaselineTest

    has_baseline = {t.test.pdf for t in tests if t.test.type == "baseline"}
    rows = [{"pdf": pdf, "page": 1, "id": f"{pdf}_baseline", "type": "baseline"}
            for pdf in page_counts if pdf not in has_baseline]
    return [BenchTest(BaselineTest(**row), BASELINE_SOURCE, row) for row in rows]


def _pages(pdf_dir: Path, tests: list[BenchTest]) -> list[BenchPage]:
    grouped: dict[tuple[str, int], list[BenchTest]] = {}
    for bench_test in tests:
        grouped.setdefault((bench_test.test.pdf, bench_test.test.page), []).append(bench_test)
    return [BenchPage(pdf, page, pdf_dir / pdf, tuple(grouped[(pdf, page)])) for pdf, page in sorted(grouped)]


def load_olmocr_bench(bench_dir: str | Path, *, baseline: bool = True) -> list[BenchPage]:
    """Every tested page of a bench folder, sorted by (PDF, page), tests in file and line order.

    `baseline=False` drops every baseline test, the automatic ones and any a JSONL file lists, as
    `olmocr.bench.benchmark --skip_baseline` does.
    """
    bench_dir = Path(bench_dir)
    problems = ProblemCollector()
    jsonl_files, pdf_dir = _bench_files(bench_dir, problems)
    types = valid_test_types()
    rows = [row for jsonl in jsonl_files for row in read_rows(jsonl, problems)]
    rows = [row for row in rows if check_fields(row, problems, types)]
    page_counts = count_pages(pdf_dir, problems)
    check_row_targets(rows, pdf_dir, page_counts, problems)
    covered = {(row.data["pdf"], row.data["page"]) for row in rows} | {(pdf, 1) for pdf in page_counts}
    _uncovered_pages(pdf_dir, page_counts, covered, problems)
    problems.raise_if_any()
    built = [(row, _build_test(row, problems)) for row in rows]
    problems.raise_if_any()
    tests = [BenchTest(test, row.source.name, row.data) for row, test in built]
    tests += _baseline_tests(page_counts, tests)
    if not baseline:
        tests = [t for t in tests if t.test.type != "baseline"]
    return _pages(pdf_dir, tests)


def download_olmocr_bench(
    repo_id: str = HUB_REPO_ID, *, revision: Optional[str] = None, cache_dir: Optional[str | Path] = None
) -> Path:
    """The hub release's bench folder (`bench_data/`: JSONL files and pdfs/) in the local HF cache.

    Only the JSONL files and PDFs are fetched, not the README or stray files. Offline
    (HF_HUB_OFFLINE=1) this resolves from the cache or fails with huggingface_hub's own message.
    """
    from huggingface_hub import snapshot_download

    root = snapshot_download(
        repo_id=repo_id,
        repo_type="dataset",
        revision=revision,
        cache_dir=None if cache_dir is None else str(cache_dir),
        allow_patterns=[f"{HUB_SUBDIR}/*.jsonl", f"{HUB_SUBDIR}/pdfs/**"],
    )
    return Path(root) / HUB_SUBDIR


def load_olmocr_bench_from_hub(
    repo_id: str = HUB_REPO_ID,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[str | Path] = None,
    baseline: bool = True,
) -> list[BenchPage]:
    """`load_olmocr_bench` on the downloaded hub release (1,403 PDFs, about 7,000 tests)."""
    return load_olmocr_bench(download_olmocr_bench(repo_id, revision=revision, cache_dir=cache_dir), baseline=baseline)
