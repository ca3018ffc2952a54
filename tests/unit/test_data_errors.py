"""A data source that yields zero usable rows is a DataError (an expected failure, printed without a
traceback) naming the file (or the hub dataset and split), what was wrong and how to fix it: from
every reader (GLUE headed files, CoLA, demo, translation TSV) and from hub splits."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from forge.config.errors import DataError, ForgeFailure
from forge.data.demo import DemoHandler, read_sentence_label_tsv
from forge.data.glue import GLUE_TASKS, GlueHandler, _read_cola, _read_with_header
from forge.data.translation import TranslationHandler, read_pairs_tsv

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"


def write(path: Path, text: str, gz: bool = False) -> Path:
    """`text` as UTF-8, gzipped when asked (the readers detect gzip by its magic bytes)."""
    path.write_bytes(gzip.compress(text.encode("utf-8")) if gz else text.encode("utf-8"))
    return path


def at(path: Path, pattern: str) -> str:
    """A `match=` pattern for an error that starts with the file's path."""
    return "^" + re.escape(str(path)) + pattern


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    assert isinstance(excinfo.value, ForgeFailure) and not isinstance(excinfo.value, ValueError)
    return str(excinfo.value)


# ---- GLUE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_glue_headed_file_with_only_a_header(tmp_path: Path, gz: bool) -> None:
    path = write(tmp_path / "dev.tsv", QQP_HEADER, gz)
    with pytest.raises(DataError) as excinfo:
        _read_with_header(path, GLUE_TASKS["qqp"])
    text = error_text(excinfo)
    assert text.startswith(f"{path}: no usable rows: only a header, no data rows. Fix: ")
    assert "original GLUE QQP file (a header naming question1, question2, is_duplicate)" in text


def test_glue_headed_file_whose_labels_cannot_be_read(tmp_path: Path) -> None:
    rows = "".join(f"{i}\t1\t2\tWhy?\tHow?\tyes\n" for i in range(12))  # "yes" is no 0/1 label
    path = write(tmp_path / "train.tsv", QQP_HEADER + rows + "99\t1\t2\ttoo short\n")
    with pytest.raises(DataError, match=r"train.tsv: no usable rows: 13 row\(s\) skipped because they lack "
                                         r"fields or their label could not be read\. Fix: use the original"):
        _read_with_header(path, GLUE_TASKS["qqp"])


def test_glue_headed_file_errors_name_the_file(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataError, match=at(empty, r": empty file; expected a header with \['sentence', 'label'\]")):
        _read_with_header(empty, GLUE_TASKS["sst2"])
    renamed = write(tmp_path / "renamed.tsv", "text\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match=at(renamed, r": header lacks column\(s\) \['sentence'\]; found "
                                                 r"\['text', 'label'\]\. Is this the GLUE SST-2 file\?")):
        _read_with_header(renamed, GLUE_TASKS["sst2"])


def test_cola_empty_and_unreadable_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "dev.tsv", "")
    with pytest.raises(DataError, match=at(empty, r": no usable rows: an empty file\. Fix: use the original "
                                               r"GLUE CoLA file \(no header, 4 tab-separated columns")):
        _read_cola(empty, GLUE_TASKS["cola"])
    # a CoLA file converted to two columns: every row lacks fields
    converted = write(tmp_path / "train.tsv", "".join(f"A sentence {i}.\t1\n" for i in range(5)))
    with pytest.raises(DataError, match=r"train.tsv: no usable rows: 5 row\(s\) skipped because"):
        _read_cola(converted, GLUE_TASKS["cola"])


def test_glue_handler_load_reports_the_bad_file(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood .\t1\nbad .\t0\n")
    write(tmp_path / "dev.tsv.gz", "sentence\tlabel\n", gz=True)
    h = GlueHandler(name="sst2", glue_task="sst2", data_dir=str(tmp_path))
    assert h.validate() == []  # the header is fine: only reading finds there are no rows
    with pytest.raises(DataError, match=r"dev.tsv.gz: no usable rows: only a header"):
        h.capped_splits()


# ---- demo ---------------------------------------------------------------------------------------


def test_demo_reader_only_a_header_and_broken_files(tmp_path: Path) -> None:
    only_header = write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError) as excinfo:
        read_sentence_label_tsv(only_header)
    assert error_text(excinfo) == (
        f"{only_header}: no usable rows: only a header, no data rows. Fix: use a UTF-8 TSV with the "
        "header sentence<TAB>label and one `text<TAB>0|1` row per line")
    empty = write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataError, match=at(empty, r": expected the header \['sentence', 'label'\], found an empty file")):
        read_sentence_label_tsv(empty)
    bad_row = write(tmp_path / "bad.tsv", "sentence\tlabel\nfine\t1\nnot fine\tmaybe\n")
    with pytest.raises(DataError, match=at(bad_row, r":3: expected 'sentence<TAB>0\|1', found \['not fine', 'maybe'\]")):
        read_sentence_label_tsv(bad_row)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngreat\t1\n")
    with pytest.raises(DataError, match=r"dev.tsv: no usable rows"):
        DemoHandler(data_dir=str(tmp_path)).load_splits()


# ---- translation --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_translation_reader_only_a_header(tmp_path: Path, gz: bool) -> None:
    path = write(tmp_path / "heldout.tsv", "en\tfr\n", gz)
    with pytest.raises(DataError) as excinfo:
        read_pairs_tsv(path, "en", "fr")
    assert error_text(excinfo).startswith(
        f"{path}: no usable rows: only a header, no data rows. Fix: use a UTF-8 TSV whose first row "
        "names the columns en and fr")


def test_translation_reader_every_row_too_short(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "id\ten\tfr\n" + "".join(f"{i}\tHello.\n" for i in range(4)))
    with pytest.raises(DataError, match=r"train.tsv: no usable rows: 4 row\(s\) skipped because they lack the "
                                        r"en/fr fields"):
        read_pairs_tsv(path, "en", "fr")


# ---- hub splits with zero rows (load_dataset stubbed: no network) -------------------------------


def test_translation_hub_split_without_rows(monkeypatch) -> None:
    import datasets

    def fake(rows_train: int, rows_eval: int | None):
        split = lambda n: datasets.Dataset.from_dict({"en": [f"e{i}" for i in range(n)],  # noqa: E731
                                                      "fr": [f"f{i}" for i in range(n)]})
        splits = {"train": split(rows_train)}
        if rows_eval is not None:
            splits["test"] = split(rows_eval)
        return datasets.DatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: fake(5, 0))
    h = TranslationHandler(name="wmt", hub_dataset="org/wmt-tiny", hub_config="en-fr")
    with pytest.raises(DataError, match=r"^hub dataset org/wmt-tiny \(en-fr\): split 'test' has no rows"):
        h.capped_splits()
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: fake(0, None))
    with pytest.raises(DataError, match=r"^hub dataset org/wmt-tiny \(en-fr\): split 'train' has no rows "
                                        r"\(train has 0\)"):
        h.capped_splits()
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: fake(4, None))
    splits = h.capped_splits()  # 4 rows, train only: the last one is held out
    assert splits["train"].sources == ["e0", "e1", "e2"] and splits["validation"].targets == ["f3"]


def test_translation_hub_without_the_languages(monkeypatch) -> None:
    import datasets

    rows = [{"en": "a", "de": "b"}]
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"translation": rows * 20})}))
    with pytest.raises(DataError, match=r"^hub dataset Helsinki-NLP/europarl \(en-fr\): its `translation` "
                                        r"column has no language 'fr'; its languages are \['de', 'en'\]"):
        TranslationHandler(name="t").capped_splits()


def test_glue_hub_split_without_rows(monkeypatch) -> None:
    import datasets

    def fake_load_dataset(path, name):
        split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
            {"sentence": [f"s{i}" for i in range(n)], "label": [i % 2 for i in range(n)]})
        return datasets.DatasetDict({"train": split(4), "validation": split(0)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError, match=r"^sst2: the validation split of hub:nyu-mll/glue/sst2 has no rows\. Fix:"):
        GlueHandler(name="sst2", glue_task="sst2").capped_splits()
