"""The cheap checks on an olmOCR-bench folder's JSONL rows, run before any test object is built.

olmocr builds a `math` test by rendering its LaTeX in headless Chromium, and its own loader stops at
the first bad line. Reading the rows as plain JSON first means a folder with a typo in a test type,
a missing PDF and a page past the end of another PDF reports all three at once, in seconds, before
a browser starts. The checks mirror what `olmocr.bench.benchmark` would trip over later: an unknown
type, a PDF that is not under `pdfs/`, a page the PDF does not have, a PDF it cannot open, a test
id used twice (its per-file score bookkeeping is keyed by id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.config.errors import ProblemCollector
from forge.data.ocr.pdf import pdf_page_count

#: Fields every olmOCR-bench test row carries, whatever its type.
REQUIRED_FIELDS = ("pdf", "page", "id", "type")


@dataclass(frozen=True)
class TestRow:
    """One JSONL line: which file it came from (olmocr scores per file), its line, its fields."""

    source: Path
    line: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        """`file.jsonl:LINE`, the key a problem with this row is reported under."""
        return f"{self.source}:{self.line}"


def valid_test_types() -> list[str]:
    """The test types olmocr knows (its `TestType` enum), so new olmocr types need no change here."""
    from olmocr.bench.tests import TestType

    return sorted(t.value for t in TestType)


def read_rows(jsonl: Path, problems: ProblemCollector) -> list[TestRow]:
    """Every non-blank line of `jsonl` as a row (olmocr's loader skips blank lines too)."""
    rows = []
    for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{jsonl}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            problems.add(where, f"not valid JSON ({error.msg} at column {error.colno})",
                         fix="each non-blank line of an olmOCR-bench JSONL file is one JSON object")
            continue
        if not isinstance(data, dict):
            problems.add(where, f"a JSON {type(data).__name__}, not an object", fix="one test object per line")
            continue
        rows.append(TestRow(jsonl, number, data))
    return rows


def check_fields(row: TestRow, problems: ProblemCollector, types: list[str]) -> bool:
    """The fields every test needs, a known type and a 1-based page; False when the row is unusable."""
    missing = [name for name in REQUIRED_FIELDS if name not in row.data]
    if missing:
        problems.add(row.where, f"missing field(s) {missing}", fix=f"every test row has {list(REQUIRED_FIELDS)}")
        return False
    ok = True
    if row.data["type"] not in types:
        problems.add(row.where, "unknown test type", value=row.data["type"], fix=f"use one of {types}")
        ok = False
    page = row.data["page"]
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        problems.add(row.where, "page must be a whole number from 1", value=page,
                     fix="olmOCR-bench numbers pages from 1")
        ok = False
    return ok


def count_pages(pdf_dir: Path, problems: ProblemCollector) -> dict[str, int]:
    """Page count of every PDF under `pdf_dir`, by its path relative to it (olmocr's PDF name).

    Every PDF, not only those a test names: `olmocr.bench.benchmark` gives each of them a baseline
    test and opens each one. A PDF PDFium cannot open is a problem here, not a crash later.
    """
    counts = {}
    for path in sorted(pdf_dir.rglob("*.pdf")):
        name = path.relative_to(pdf_dir).as_posix()
        try:
            counts[name] = pdf_page_count(path)
        except RuntimeError as error:  # pypdfium2's PdfiumError
            problems.add(str(path), f"unreadable PDF ({error})",
                         fix="replace it with a valid PDF or remove it from pdfs/")
    return counts


def check_row_targets(
    rows: list[TestRow], pdf_dir: Path, page_counts: dict[str, int], problems: ProblemCollector
) -> None:
    """Each row names an existing PDF and a page it has; no test id is used twice."""
    first_use: dict[str, str] = {}
    for row in rows:
        pdf, page, test_id = row.data["pdf"], row.data["page"], row.data["id"]
        if test_id in first_use:
            problems.add(row.where, f"test id already used at {first_use[test_id]}", value=test_id,
                         fix="give every test a unique id (olmocr keys its per-file scores by id)")
        first_use.setdefault(test_id, row.where)
        if pdf not in page_counts:
            if not (pdf_dir / str(pdf)).is_file():
                problems.add(row.where, f"no such PDF under {pdf_dir}", value=pdf,
                             fix="name the PDF by its path relative to pdfs/, or add the file")
            continue  # an unreadable PDF was reported by count_pages
        if page > page_counts[pdf]:
            problems.add(row.where, f"page {page} does not exist: {pdf} has {page_counts[pdf]} page(s)", value=page,
                         fix=f"use a page from 1 to {page_counts[pdf]}")
