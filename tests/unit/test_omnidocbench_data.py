"""forge.data.ocr.omnidocbench: annotation JSON -> page markdown, against the demo's own ground truth.

Measured on the 18 demo pages (OmniDocBench's shipped mds/, trailing blank lines stripped): mean
normalised edit distance 0.0076 (0.0096 with the mds' trailing "\\n\\n"), 13 pages identical. The
five that differ, all on the shipped side:
- eastmoney_…pdf_0: its three-block `truncated` chain is written with the middle block twice (415
  characters); the conversion here writes each block once;
- jiaocai_needrop_en_3361 and notes_1ba14…_15: the annotation's literal "/t" is a tab in the mds;
- jiaocaineedrop_Chapter9.pdf_46: one space fewer inside a title's run of spaces;
- newspaper_5e26…_4: a leading space before a merged paragraph.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rapidfuzz.distance import Levenshtein

from forge.config.errors import ConfigError
from forge.data.ocr.omnidocbench import TEXT_EVAL_IGNORED, load_omnidocbench, page_markdown
from forge.eval.ocr_metrics import normalized_edit_distance
from tests.unit.ocr_support import OCR_DATA

DEMO = OCR_DATA / "omnidocbench" / "demo_data"
ANNOTATIONS = DEMO / "omnidocbench_demo" / "OmniDocBench_demo.json"


@pytest.fixture(scope="module")
def demo() -> tuple[list, list[str]]:
    pages = load_omnidocbench(ANNOTATIONS)
    shipped = [(DEMO / "omnidocbench_demo" / "mds" / f"{p.image_path.stem}.md").read_text() for p in pages]
    return pages, shipped


def test_demo_matches_shipped_markdown(demo) -> None:
    pages, shipped = demo
    assert len(pages) == 18 and all(p.image_path.is_file() for p in pages)
    ours = [p.markdown for p in pages]
    stripped = [s.rstrip() for s in shipped]
    assert normalized_edit_distance(ours, stripped) < 0.01  # measured 0.0076
    assert normalized_edit_distance(ours, shipped) < 0.012  # measured 0.0096
    assert sum(o == s for o, s in zip(ours, stripped)) >= 13
    eastmoney = next(i for i, p in enumerate(pages) if p.name.startswith("eastmoney_"))
    assert Levenshtein.distance(ours[eastmoney], stripped[eastmoney]) == 415  # the repeated block
    assert pages[0].attributes["data_source"] == "PPT2PDF"


def test_a_model_scores_the_same_against_either_ground_truth(demo) -> None:
    """The demo's end2end/ predictions score within 0.001 against our markdown and the shipped one."""
    pages, shipped = demo
    predictions = [(DEMO / "end2end" / f"{p.image_path.stem}.md").read_text() for p in pages]
    ours = normalized_edit_distance(predictions, [p.markdown for p in pages])
    assert ours == pytest.approx(normalized_edit_distance(predictions, shipped), abs=1e-3)
    assert 0.3 < ours < 0.6  # measured 0.453: real model output, not a copy


def _block(category: str, order, anno_id: int, **content) -> dict:
    return {"category_type": category, "order": order, "anno_id": anno_id, "ignore": False, **content}


PAGE = {
    "page_info": {"image_path": "scan_3.jpg"},
    "layout_dets": [
        _block("page_number", None, 0, text="12"),
        _block("header", None, 1, text="Journal of Things"),
        _block("text_block", 4, 2, text="Mexico, as well as"),
        _block("title", 1, 3, text="Results"),
        _block("text_block", 3, 4, text="The basin in northwestern New"),
        _block("equation_isolated", 5, 5, latex="E = mc^2"),
        _block("table", 7, 6, html="<table><tr><td>1</td></tr></table>", latex="\\begin{tabular}1\\end{tabular}"),
        _block("table_caption", 6, 7, text="Table 1: a table"),
        _block("figure", 8, 8),
        _block("text_block", 9, 9, text="不施"),
        _block("text_block", 10, 10, text="肥"),
        _block("text_block", 2, 11, text="ignored block", ignore=True),
    ],
    "extra": {"relation": [
        {"source_anno_id": 4, "target_anno_id": 2, "relation_type": "truncated"},
        {"source_anno_id": 9, "target_anno_id": 10, "relation_type": "truncated"},
        {"source_anno_id": 6, "target_anno_id": 7, "relation_type": "parent_son"},
    ]},
}


def test_page_markdown_by_hand() -> None:
    assert page_markdown(PAGE).split("\n\n") == [
        "# Results",
        "The basin in northwestern New Mexico, as well as",  # truncated halves, a space between words
        "$$\nE = mc^2\n$$",
        "Table 1: a table",
        "<table><tr><td>1</td></tr></table>",
        "![](./imgs/scan_3_8.jpg)",
        "不施肥",  # no space inside Chinese
    ]
    text_only = page_markdown(PAGE, skip=TEXT_EVAL_IGNORED, table_format="latex", figures=False)
    assert "Table 1" not in text_only and "imgs/" not in text_only
    assert "\\begin{tabular}1\\end{tabular}" in text_only
    with pytest.raises(ValueError, match="table_format"):
        page_markdown(PAGE, table_format="markdown")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_omnidocbench(tmp_path / "OmniDocBench.json")
    broken = tmp_path / "OmniDocBench.json"
    broken.write_text('[{"page_info": {"image_path": "a.jpg"},\n  "layout_dets": [}]')
    with pytest.raises(ConfigError, match="malformed JSON .* line 2") as error:
        load_omnidocbench(broken)
    assert error.value.problems[0].key == str(broken)
    broken.write_text('{"page_info": {}}')
    with pytest.raises(ConfigError, match="not a list of pages"):
        load_omnidocbench(broken)


def test_missing_images_all_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.jpg").symlink_to(next((DEMO / "omnidocbench_demo" / "images").iterdir()))
    pages = [
        {"page_info": {"image_path": "here.jpg"}, "layout_dets": []},
        {"page_info": {"image_path": "gone.jpg"}, "layout_dets": []},
        {"page_info": {"image_path": "also_gone.jpg"}, "layout_dets": []},
        {"layout_dets": []},
    ]
    annotations = tmp_path / "OmniDocBench.json"
    annotations.write_text(json.dumps(pages))
    with pytest.raises(ConfigError) as error:
        load_omnidocbench(annotations)
    assert [(p.key, p.value) for p in error.value.problems] == [
        (f"{annotations}[1].page_info.image_path", "gone.jpg"),
        (f"{annotations}[2].page_info.image_path", "also_gone.jpg"),
        (f"{annotations}[3]", None),
    ]
    annotations.write_text(json.dumps(pages[:1]))
    assert [(p.name, p.markdown) for p in load_omnidocbench(annotations)] == [("here.jpg", "")]
