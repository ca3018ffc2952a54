"""task=omnidocbench: the demo folder validates and splits by a seeded hash of the page names (the
same pages whatever the file order, another set for another seed), bad folders are keyed, images
load lazily at max_pixels, the hub path, and metrics on the demo's end2end model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.config.errors import ConfigError
from forge.data.omnidocbench_task import OmniDocBenchHandler, split_position
from forge.eval.ocr_metrics import edit_similarity, normalized_edit_distance
from tests.unit.ocr_support import OCR_DATA, fake_hub_snapshot

DEMO = OCR_DATA / "omnidocbench" / "demo_data" / "omnidocbench_demo"
END2END = OCR_DATA / "omnidocbench" / "demo_data" / "end2end"
ANNOTATIONS = json.loads((DEMO / "OmniDocBench_demo.json").read_text(encoding="utf-8"))


def handler(data_dir, **kwargs) -> OmniDocBenchHandler:
    return OmniDocBenchHandler(name="omnidocbench", data_dir=None if data_dir is None else str(data_dir), **kwargs)


def _names(pairs_owner: OmniDocBenchHandler) -> dict[str, list[str]]:
    """Each split's page names, read back from the handler's pages and the split rule."""
    splits = pairs_owner.load_splits()
    by_markdown = {p.markdown: p.name for p in pairs_owner.doc_pages()}
    return {split: sorted(by_markdown[t] for t in pairs.targets) for split, pairs in splits.items()}


def _folder(tmp_path: Path, pages: list) -> Path:
    """A folder with `pages` as its annotation JSON and the demo's images linked beside it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "images").symlink_to(DEMO / "images")
    (tmp_path / "annotations.json").write_text(json.dumps(pages), encoding="utf-8")
    return tmp_path


def test_demo_validates_and_splits_every_page_once() -> None:
    h = handler(DEMO)
    assert h.validate() == []
    assert (h.primary_metric, h.greater_is_better) == ("normalized_edit_distance", False)
    names = _names(h)
    assert (len(names["train"]), len(names["validation"])) == (14, 4)  # split_seed 0, fraction 0.2
    assert sorted(names["train"] + names["validation"]) == sorted(p.name for p in h.doc_pages())


def test_split_is_deterministic_and_independent_of_file_order(tmp_path: Path) -> None:
    first, again = _names(handler(DEMO)), _names(handler(DEMO))
    assert first == again
    reversed_folder = _folder(tmp_path / "reversed", list(reversed(ANNOTATIONS)))
    assert _names(handler(reversed_folder)) == first
    assert _names(handler(DEMO, split_seed=2))["validation"] != first["validation"]
    assert split_position("a.jpg", 0) == split_position("a.jpg", 0) != split_position("a.jpg", 1)


def test_a_fraction_that_empties_a_split_names_the_key() -> None:
    lowest = min(split_position(page["page_info"]["image_path"], 0) for page in ANNOTATIONS)
    with pytest.raises(ConfigError, match="validation split of 18 page") as error:
        handler(DEMO, validation_fraction=lowest / 2).load_splits()
    assert error.value.problems[0].key == "task.validation_fraction"


def test_images_load_lazily_at_max_pixels() -> None:
    pairs = handler(DEMO, max_pixels=200 * 200).load_splits()["validation"]
    assert all(callable(page) for page in pairs.pages)
    image = pairs.image(0)
    assert image.mode == "RGB" and image.width * image.height == pytest.approx(200 * 200, rel=0.02)


def test_bad_folders_are_keyed(tmp_path: Path) -> None:
    assert [(p.key, p.message) for p in handler(tmp_path / "nope").validate()] == [("task.data_dir", "no such folder")]
    assert [p.key for p in handler(DEMO, table_format="markdown").validate()] == ["task.table_format"]
    assert [p.key for p in handler(DEMO, annotations="gone.json").validate()] == ["task.annotations"]
    two = _folder(tmp_path / "two", ANNOTATIONS[:2])
    (two / "other.json").write_text("[]")
    assert [p.key for p in handler(two).validate()] == ["task.annotations"]
    missing = json.loads(json.dumps(ANNOTATIONS[:2]))
    missing[1]["page_info"]["image_path"] = "not_there.jpg"
    folder = _folder(tmp_path / "missing", missing)
    problems = handler(folder).validate()
    assert [p.key for p in problems] == [f"{folder / 'annotations.json'}[1].page_info.image_path"]
    assert problems[0].value == "not_there.jpg"


def test_the_hub_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_hub_snapshot(monkeypatch, tmp_path / "snapshot", DEMO, ".")
    h = handler(None, hub_revision="v1.5", annotations="OmniDocBench_demo.json")
    assert h.validate() == [] and calls == []
    assert _names(h) == _names(handler(DEMO))
    assert calls == [dict(repo_id="opendatalab/OmniDocBench", repo_type="dataset", revision="v1.5", cache_dir=None,
                          allow_patterns=["OmniDocBench_demo.json", "images/*"])]


def test_metrics_on_the_demo_model_outputs() -> None:
    validation = handler(DEMO).load_splits()["validation"]
    by_markdown = {p.markdown: p for p in handler(DEMO).doc_pages()}
    predictions = [(END2END / f"{by_markdown[t].image_path.stem}.md").read_text() for t in validation.targets]
    metrics = handler(DEMO).compute_metrics(predictions, validation.targets)
    assert metrics == {"normalized_edit_distance": normalized_edit_distance(predictions, validation.targets),
                       "edit_similarity": edit_similarity(predictions, validation.targets)}
    assert metrics["normalized_edit_distance"] == pytest.approx(1 - metrics["edit_similarity"])
    assert 0.1 < metrics["normalized_edit_distance"] < 0.9  # real model output, neither copy nor noise
