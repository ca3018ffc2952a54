"""forge.data.ocr: olmOCR-bench folders as pages (counts from the data's README), page rendering,
the hub loader's path, and one ConfigError naming every problem of a broken folder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from forge.config.errors import ConfigError
from forge.data.ocr.olmocr_bench import BenchPage, load_olmocr_bench, load_olmocr_bench_from_hub
from forge.data.ocr.pdf import render_pdf_page
from tests.unit.ocr_support import OCR_DATA, fake_hub_snapshot, require_math  # noqa: F401 (a fixture)

BENCH = OCR_DATA / "olmocr-bench"
SAMPLE = BENCH / "sample_data"
#: The bench folders in the shared data; none but sample_data and orbit-bench hold math tests.
NO_MATH_FOLDERS = [
    "dev_history/long_texts",
    "dev_history/old_docs",
    "dev_history/cleaned_multi_columns",
    "dev_history/olmocr/bench/headers_footers",
    "dev_history/output_old_latex",
]


def _types(pages: list[BenchPage]) -> Counter:
    return Counter(t.test.type for p in pages for t in p.tests)


def test_folders_without_math_match_the_readme() -> None:
    pages = [p for folder in NO_MATH_FOLDERS for p in load_olmocr_bench(BENCH / folder)]
    # README (dev_history table): present 14+11+11, order 8+23, absent 4+19; one baseline per PDF.
    assert _types(pages) == Counter(present=36, order=31, absent=23, baseline=20)
    assert len(pages) == 20 and all(p.page == 1 for p in pages)
    old_docs = load_olmocr_bench(BENCH / "dev_history/old_docs")
    assert [p.pdf for p in old_docs] == ["15.pdf", "24.pdf", "38.pdf", "41.pdf"]
    assert {t.source for p in old_docs for t in p.tests} == {"old_docs.jsonl", "baseline"}
    assert old_docs[0].tests[-1].test.id == "15.pdf_baseline"  # olmocr's name for the automatic test


def test_baseline_false_drops_every_baseline() -> None:
    pages = load_olmocr_bench(BENCH / "dev_history/long_texts", baseline=False)
    assert _types(pages) == Counter(present=14)


def test_sample_data_pages(require_math) -> None:
    pages = load_olmocr_bench(SAMPLE)
    # README: 99 tests in dataset.jsonl + 1 explicit baseline over 21 PDFs (mattsnotes has 3 pages),
    # and olmocr's automatic baseline for the 20 PDFs without one.
    assert _types(pages) == Counter(present=30, absent=24, table=20, order=13, math=12, baseline=21)
    assert len(pages) == 23
    assert [p.page for p in pages if p.pdf == "mattsnotes.pdf"] == [1, 2, 3]
    assert sum(p.pdf.startswith("headers_footers/") for p in pages) == 7
    blank = next(p for p in pages if p.pdf == "blank_book_pg1.pdf")
    assert [t.source for t in blank.tests] == ["blanks.jsonl"]  # no automatic one beside it


@pytest.mark.slow  # 19 KaTeX renders in Chromium: ~15 s on a cold equation cache, 1 s warm
def test_orbit_bench_math(require_math) -> None:
    pages = load_olmocr_bench(BENCH / "orbit-bench/bench_data")
    assert _types(pages) == Counter(math=19, baseline=12)


def test_render_resolution() -> None:
    blank = SAMPLE / "pdfs" / "blank_book_pg1.pdf"  # 273.6 x 485.8 points
    image = render_pdf_page(blank, 1)
    assert image.mode == "RGB" and image.height == 1288
    assert image.width == pytest.approx(273.6 * 1288 / 485.8, abs=1)
    assert render_pdf_page(SAMPLE / "pdfs" / "small_page_size.pdf", 1, longest_side=None, dpi=144).size == (360, 600)
    page = load_olmocr_bench(BENCH / "dev_history/long_texts")[0]
    assert max(page.render(longest_side=500).size) == 500
    with pytest.raises(ValueError, match="exactly one"):
        render_pdf_page(blank, 1, longest_side=100, dpi=72)
    with pytest.raises(ValueError, match="has 1 page"):
        render_pdf_page(blank, 2)


def test_hub_loader_reuses_the_local_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_hub_snapshot(monkeypatch, tmp_path / "snapshot", BENCH / "dev_history/old_docs", "bench_data")
    pages = load_olmocr_bench_from_hub(revision="abc123")
    assert calls == [dict(repo_id="allenai/olmOCR-bench", repo_type="dataset", revision="abc123", cache_dir=None,
                          allow_patterns=["bench_data/*.jsonl", "bench_data/pdfs/**"])]
    local = load_olmocr_bench(BENCH / "dev_history/old_docs")
    def ids(pages: list[BenchPage]) -> list:
        return [(p.key, [t.test.id for t in p.tests]) for p in pages]

    assert ids(pages) == ids(local)


# ---- bad input: one ConfigError naming every problem ------------------------------------------


def _problems(error: pytest.ExceptionInfo) -> list[tuple[str, str]]:
    return [(p.key, p.message) for p in error.value.problems]


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder") as error:
        load_olmocr_bench(tmp_path / "nope")
    assert _problems(error)[0][0] == "olmocr_bench.dir"
    with pytest.raises(ConfigError) as error:
        load_olmocr_bench(tmp_path)
    assert [m for _, m in _problems(error)] == [
        "no *.jsonl test files in this folder",
        "no pdfs/ folder in this folder",
    ]


def test_every_row_problem_at_once(tmp_path: Path) -> None:
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "notes.pdf").symlink_to(SAMPLE / "pdfs" / "mattsnotes.pdf")  # 3 pages
    (tmp_path / "pdfs" / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    rows = [
        '{"pdf": "notes.pdf", "page": 1, "id": "t1", "type": "present", "text": "hello"}',
        '{"pdf": "notes.pdf", "page": 2, "id": "t2", "type": "presnet", "text": "hello"}',
        '{"pdf": "gone.pdf", "page": 1, "id": "t3", "type": "absent", "text": "x"}',
        '{"pdf": "notes.pdf", "page": 4, "id": "t4", "type": "present", "text": "hello"}',
        "",
        '{"pdf": "notes.pdf", "page": 1, "id": "t1", "type": "absent", "text": "bye"}',
        '{"pdf": "notes.pdf", "page": 1, "id": "t6", "type": "present", "text": ',
        '{"pdf": "notes.pdf", "page": 1, "id": "t7", "type": "math", "math": "x", "nonsense": 1}',
    ]
    (tmp_path / "tests.jsonl").write_text("\n".join(rows))
    with pytest.raises(ConfigError) as error:
        load_olmocr_bench(tmp_path)
    jsonl, notes = tmp_path / "tests.jsonl", str(tmp_path / "pdfs" / "notes.pdf")
    problems = _problems(error)
    keys = dict(problems)
    assert "unknown test type" in keys[f"{jsonl}:2"]
    assert "no such PDF" in keys[f"{jsonl}:3"]
    assert keys[f"{jsonl}:4"] == "page 4 does not exist: notes.pdf has 3 page(s)"
    assert keys[f"{jsonl}:6"] == f"test id already used at {jsonl}:1"
    assert keys[f"{jsonl}:7"].startswith("not valid JSON")
    assert keys[str(tmp_path / "pdfs" / "broken.pdf")].startswith("unreadable PDF")
    # page 2's only row has a bad type, page 3 has none
    assert [m for k, m in problems if k == notes] == ["page 2 of 3 has no test", "page 3 of 3 has no test"]
    assert len(problems) == 8  # the math row's unknown field is olmocr's check, which runs after these
    rendered = str(error.value)
    assert "presnet" in rendered and "absent" in rendered and "baseline" in rendered  # the valid types


def test_olmocr_field_checks_become_problems(tmp_path: Path) -> None:
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "one.pdf").symlink_to(SAMPLE / "pdfs" / "blank_book_pg1.pdf")
    rows = [
        '{"pdf": "one.pdf", "page": 1, "id": "a", "type": "present"}',
        '{"pdf": "one.pdf", "page": 1, "id": "b", "type": "order", "before": "x", "after": "y", "max_diffs": -1}',
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(rows))
    with pytest.raises(ConfigError) as error:
        load_olmocr_bench(tmp_path)
    assert [key.rsplit(":", 1)[1] for key, _ in _problems(error)] == ["1", "2"]
    assert all("olmocr cannot build this test" in message for _, message in _problems(error))


def test_math_without_a_browser_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "one.pdf").symlink_to(SAMPLE / "pdfs" / "blank_book_pg1.pdf")
    (tmp_path / "t.jsonl").write_text('{"pdf": "one.pdf", "page": 1, "id": "m", "type": "math", "math": "x^2"}')

    def no_browser(*args, **kwargs):
        raise RuntimeError("Executable doesn't exist at ~/.cache/ms-playwright/...")

    monkeypatch.setattr("olmocr.bench.tests.render_equation", no_browser)
    with pytest.raises(ConfigError, match="chromium-headless-shell") as error:
        load_olmocr_bench(tmp_path)
    assert "Executable doesn't exist" in error.value.problems[0].message
