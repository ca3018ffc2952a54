"""task=olmocr_bench: validate() on good and bad folders (every problem keyed), both splits the same
pages with their tests as JSON, lazy renders at max_pixels, caps, the hub path, and compute_metrics
on olmOCR's shipped outputs equal to score_bench's numbers (which equal olmocr's own script's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.data.ocr.olmocr_bench import load_olmocr_bench
from forge.data.ocr.page_tests import load_page_tests
from forge.data.olmocr_bench_task import OlmocrBenchHandler
from forge.data.ocr_synth import OcrSynthHandler
from forge.eval.olmocr_checks import read_candidate_folder, score_bench
from tests.unit.ocr_support import OCR_DATA, fake_hub_snapshot, require_math  # noqa: F401 (a fixture)

BENCH = OCR_DATA / "olmocr-bench"
SAMPLE = BENCH / "sample_data"
OLD_DOCS = BENCH / "dev_history" / "old_docs"  # 4 one-page PDFs, 23 tests, no math (no browser)


def handler(data_dir, **kwargs) -> OlmocrBenchHandler:
    return OlmocrBenchHandler(name="olmocr_bench", data_dir=None if data_dir is None else str(data_dir), **kwargs)


def _folder(tmp_path: Path, *rows: str) -> Path:
    """A bench folder with one 3-page PDF (notes.pdf) and the given JSONL rows."""
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "notes.pdf").symlink_to(SAMPLE / "pdfs" / "mattsnotes.pdf")
    (tmp_path / "t.jsonl").write_text("\n".join(rows))
    return tmp_path


def _keys(problems) -> dict[str, str]:
    return {p.key: p.message for p in problems}


def test_a_page_family_without_markdown_to_train_on() -> None:
    assert OlmocrBenchHandler.has_training_targets is False
    assert OcrSynthHandler.has_training_targets is True  # inherited from PageToMarkdownHandler
    h = handler(OLD_DOCS)
    assert (h.primary_metric, h.greater_is_better) == ("pass_rate", True)


def test_validate_a_good_folder_and_splits() -> None:
    h = handler(OLD_DOCS)
    assert h.validate() == []
    splits = h.load_splits()
    assert set(splits) == {"train", "validation"}
    assert len(splits["train"]) == len(splits["validation"]) == 4
    assert splits["train"].targets == splits["validation"].targets
    pages = load_olmocr_bench(OLD_DOCS)
    for page, target in zip(pages, splits["validation"].targets):
        rebuilt = load_page_tests(target)
        assert [(t.test.id, t.source) for t in rebuilt] == [(t.test.id, t.source) for t in page.tests]
    first = json.loads(splits["validation"].targets[0])["tests"][0]
    assert first["source"] == "old_docs.jsonl" and first["row"]["id"] == "15_processed01"  # the JSONL row


def test_pages_render_lazily_at_max_pixels() -> None:
    pairs = handler(OLD_DOCS, max_pixels=300 * 300).load_splits()["validation"]
    assert all(callable(page) for page in pairs.pages)
    image = pairs.image(0)
    assert image.mode == "RGB"
    assert image.width * image.height == pytest.approx(300 * 300, rel=0.01)


def test_max_eval_samples_caps_pages() -> None:
    h = handler(OLD_DOCS, max_eval_samples=2, max_train_samples=3, seed=1)
    capped = h.load_capped_splits()
    assert (len(capped["train"]), len(capped["validation"])) == (3, 2)


def test_missing_folder_is_keyed_task_data_dir(tmp_path: Path) -> None:
    problems = handler(tmp_path / "nope").validate()
    assert [(p.key, p.message) for p in problems] == [("task.data_dir", "no such folder")]
    assert "task.data_dir=null" in problems[0].fix


def test_unknown_test_type_names_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, *(f'{{"pdf": "notes.pdf", "page": {n}, "id": "t{n}", "type": "present", "text": "hi"}}'
                                 for n in (1, 2)),
                     '{"pdf": "notes.pdf", "page": 3, "id": "t3", "type": "presnet", "text": "hi"}')
    keys = _keys(handler(folder).validate())
    assert keys[f"{folder / 't.jsonl'}:3"] == "unknown test type"


def test_page_out_of_range_names_file_and_line(tmp_path: Path) -> None:
    rows = [f'{{"pdf": "notes.pdf", "page": {n}, "id": "t{n}", "type": "present", "text": "hi"}}' for n in (1, 2, 3, 7)]
    folder = _folder(tmp_path, *rows)
    problems = handler(folder).validate()
    assert _keys(problems) == {f"{folder / 't.jsonl'}:4": "page 7 does not exist: notes.pdf has 3 page(s)"}


def test_the_hub_is_not_touched_by_validate_and_loads_its_bench_data(tmp_path: Path, monkeypatch) -> None:
    calls = fake_hub_snapshot(monkeypatch, tmp_path / "snapshot", OLD_DOCS, "bench_data")
    h = handler(None, hub_revision="abc123")
    assert h.validate() == [] and calls == []
    assert h.source() == "hub:allenai/olmOCR-bench@abc123"
    assert len(h.load_splits()["validation"]) == 4
    assert [(c["repo_id"], c["revision"]) for c in calls] == [("allenai/olmOCR-bench", "abc123")]


def test_compute_metrics_on_shipped_outputs_equals_score_bench(require_math) -> None:
    h = handler(SAMPLE)
    assert h.validate() == []
    validation = h.load_splits()["validation"]
    pages = h.bench_pages()
    outputs = read_candidate_folder(pages, SAMPLE / "olmocr_pipeline")
    predictions = [outputs[page.key][0] for page in pages]  # one repeat per page
    metrics = h.compute_metrics(predictions, validation.targets)
    score = score_bench(pages, outputs)
    assert metrics == {"pass_rate": score.overall, **{f"pass_rate/{t}": r for t, r in score.by_type.items()}}
    # olmocr.bench.benchmark prints 94.3% for these outputs (tests/unit/test_olmocr_checks.py)
    assert round(metrics["pass_rate"] * 100, 1) == 94.3
    assert set(metrics) == {"pass_rate"} | {f"pass_rate/{t}" for t in
                                             ("present", "absent", "order", "table", "math", "baseline")}
