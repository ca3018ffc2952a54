"""The `demo` task: binary sentiment of short English reviews, shipped inside the package.

It exists so that a fresh checkout can train, distil and evaluate end to end with no network and
no external data (smoke tests, tutorials, CI). The rows are synthetic, generated from hand-written
phrase lists by `forge/data/demo/make_demo_data.py` (deterministic; the committed TSVs are its
output), with negations and mixed-aspect sentences so that a tiny model does not saturate at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge.config.errors import ConfigError, ConfigProblem
from forge.data.classification import ClassificationHandler, TextExamples
from forge.data.tsv import data_error, find_split_file, iter_rows, no_usable_rows, split_file_pattern

#: the packaged data folder (covered by pyproject's package-data `data/demo/*.tsv`).
DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo"

_SPLIT_FILES = {"train": "train", "validation": "dev"}
_DEMO_FIX = "use a UTF-8 TSV with the header sentence<TAB>label and one `text<TAB>0|1` row per line"


def read_sentence_label_tsv(path: Path) -> TextExamples:
    """A `sentence<TAB>label` file with that header; any other row is a DataError (the demo
    format is strict: these files are written by a script, not downloaded)."""
    rows = iter_rows(path)
    try:
        header = next(rows, None)
        if header != ["sentence", "label"]:
            found = "an empty file" if header is None else f"the header {header}"
            raise data_error(path, f"expected the header ['sentence', 'label'], found {found}", _DEMO_FIX)
        texts: list[str] = []
        labels: list[int] = []
        for line, row in enumerate(rows, start=2):
            if len(row) != 2 or row[1] not in ("0", "1"):
                raise data_error(f"{path}:{line}", f"expected 'sentence<TAB>0|1', found {row}", _DEMO_FIX)
            texts.append(row[0])
            labels.append(int(row[1]))
    finally:
        rows.close()
    if not texts:
        raise no_usable_rows(path, 0, "", _DEMO_FIX)
    return TextExamples(texts=texts, labels=labels)


class DemoHandler(ClassificationHandler):
    """Packaged binary sentiment (0 negative, 1 positive); eval set `validation`."""

    label_names = ("negative", "positive")
    metric_names = ("accuracy", "f1")
    primary_metric = "accuracy"
    eval_set_names = ("validation",)

    def __init__(self, name: str = "demo", max_length: int = 64, **common: Any) -> None:
        super().__init__(name=name, max_length=max_length, **common)

    @property
    def folder(self) -> Path:
        """data_dir if given (same layout: train.tsv / dev.tsv), else the packaged folder."""
        return DEMO_DATA_DIR if self.data_dir is None else Path(self.data_dir).expanduser()

    def source(self) -> str:
        return "packaged:forge/data/demo" if self.data_dir is None else str(self.folder)

    def validate(self) -> list[ConfigProblem]:
        problems = super().validate()
        folder = self.folder
        missing = [split_file_pattern(s) for s in _SPLIT_FILES.values() if find_split_file(folder, s) is None]
        where = "" if self.data_dir is not None else f"the packaged demo folder {folder}: "
        if not folder.is_dir():
            message = f"{where}directory does not exist"
        elif missing:
            message = f"{where}missing {' and '.join(missing)} (expected train.tsv[.gz] and dev.tsv[.gz])"
        else:
            return problems
        fix = (
            "set task.data_dir=null to use the packaged demo data (reinstall forge if it is missing), "
            "or point it at a folder with train.tsv and dev.tsv (header sentence<TAB>label)"
        )
        return problems + [ConfigProblem(key="task.data_dir", value=self.data_dir, message=message, fix=fix)]

    def load_splits(self) -> dict[str, TextExamples]:
        problems = [p for p in self.validate() if p.key == "task.data_dir"]
        if problems:
            raise ConfigError(problems)
        return {
            split: read_sentence_label_tsv(find_split_file(self.folder, stem))
            for split, stem in _SPLIT_FILES.items()
        }
