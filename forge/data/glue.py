"""GLUE classification tasks: SST-2, CoLA, MNLI, QQP.

Two sources, the same result:
  * the hub (default, `task.data_dir=null`): `datasets.load_dataset("nyu-mll/glue", task)`;
  * a local folder (`task.data_dir=PATH`) in the ORIGINAL GLUE TSV layouts, each file `X.tsv` or
    `X.tsv.gz`. Offline clusters keep these files around, and they are what papers evaluate on.

Labels follow the hub's ids (MNLI entailment 0 / neutral 1 / contradiction 2; QQP is_duplicate),
so a model trained from one source scores identically on the other. MNLI evaluates on two eval
sets, `validation_matched` and `validation_mismatched`; the others on `validation`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from forge.config.errors import ConfigError, ConfigProblem
from forge.data.classification import ClassificationHandler, TextExamples
from forge.data.tsv import (
    data_error,
    find_split_file,
    iter_rows,
    no_usable_rows,
    read_header,
    split_file_pattern,
)

logger = logging.getLogger(__name__)

Reader = Callable[[Path, "GlueTaskSpec"], TextExamples]


# ---- readers for the GLUE TSV layouts ---------------------------------------------------------


def _read_with_header(path: Path, spec: "GlueTaskSpec") -> TextExamples:
    """Rows of a headed GLUE file, picking columns by name.

    Like the GLUE loaders (csv.DictReader + "filter out corrupted rows"), a row that lacks one of
    the needed fields, or whose label cannot be read, is skipped and counted; the count is logged
    so a truncated download does not pass silently, and a file with no usable row is a DataError.
    """
    rows = iter_rows(path)
    try:
        header = next(rows, None)
        if header is None:
            raise data_error(path, f"empty file; expected a header with {list(spec.columns)}", _fix(spec))
        missing = [c for c in spec.columns if c not in header]
        if missing:
            raise data_error(path, f"header lacks column(s) {missing}; found {header[:12]}. Is this "
                             f"the GLUE {spec.display} file?", _fix(spec))
        text_idx = [header.index(c) for c in spec.text_columns]
        label_idx = header.index(spec.label_column)
        needed = max(text_idx + [label_idx])
        texts: list[list[str]] = [[] for _ in text_idx]
        labels: list[int] = []
        skipped = 0
        for row in rows:
            label = spec.parse_label(row[label_idx]) if len(row) > needed else None
            if label is None:
                skipped += 1
                continue
            for column, idx in zip(texts, text_idx):
                column.append(row[idx])
            labels.append(label)
    finally:
        rows.close()
    _check_rows(path, spec, len(labels), skipped)
    return TextExamples(texts=texts[0], labels=labels, text_pairs=texts[1] if len(texts) > 1 else None)


def _read_cola(path: Path, spec: "GlueTaskSpec") -> TextExamples:
    """CoLA train/dev: no header; columns source, label, original mark, sentence."""
    texts: list[str] = []
    labels: list[int] = []
    skipped = 0
    for row in iter_rows(path):
        label = spec.parse_label(row[1]) if len(row) >= 4 else None
        if label is None:
            skipped += 1
            continue
        texts.append(row[3])
        labels.append(label)
    _check_rows(path, spec, len(labels), skipped, nothing="an empty file")
    return TextExamples(texts=texts, labels=labels)


def _check_rows(path: Path, spec: "GlueTaskSpec", kept: int, skipped: int,
                nothing: str = "only a header, no data rows") -> None:
    """No usable row: a DataError naming the file. Some rows skipped: a warning with the count."""
    why = "they lack fields or their label could not be read"
    if not kept:
        raise no_usable_rows(path, skipped, why, _fix(spec), nothing=nothing)
    if skipped:
        logger.warning("%s %s: skipped %d malformed row(s) (%s), as the GLUE loaders do",
                       spec.display, path.name, skipped, why)


def _fix(spec: "GlueTaskSpec") -> str:
    layout = (f"a header naming {', '.join(spec.columns)}" if spec.has_header
              else "no header, 4 tab-separated columns: source, label (0/1), original mark, sentence")
    return (f"use the original GLUE {spec.display} file ({layout}); a truncated or converted "
            "download loses rows. Or set task.data_dir=null to load the task from the hub")


def _int_label(valid: range) -> Callable[[str], int | None]:
    def parse(value: str) -> int | None:
        try:
            label = int(value.strip())
        except ValueError:
            return None
        return label if label in valid else None

    return parse


def _named_label(names: tuple[str, ...]) -> Callable[[str], int | None]:
    ids = {name: i for i, name in enumerate(names)}
    return lambda value: ids.get(value.strip())


# ---- the task table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GlueTaskSpec:
    """Everything that differs between GLUE tasks; the handler itself is generic."""

    display: str  # the GLUE folder name, used in messages: "SST-2"
    label_names: tuple[str, ...]
    metric_names: tuple[str, ...]
    primary_metric: str
    #: eval-set name -> local file stem (dev.tsv); hub split names equal the eval-set names.
    eval_files: Mapping[str, str]
    #: hub column names of the text field(s)
    hub_text_columns: tuple[str, ...]
    #: local TSV: text column names and label column name (by header), or None when headerless
    text_columns: tuple[str, ...] = ()
    label_column: str = ""
    reader: Reader = _read_with_header
    parse_label: Callable[[str], int | None] = _int_label(range(2))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.text_columns + (self.label_column,)

    @property
    def has_header(self) -> bool:
        return bool(self.text_columns)

    @property
    def file_stems(self) -> tuple[str, ...]:
        return ("train", *self.eval_files.values())


_MNLI_LABELS = ("entailment", "neutral", "contradiction")

GLUE_TASKS: dict[str, GlueTaskSpec] = {
    "sst2": GlueTaskSpec(
        display="SST-2",
        label_names=("negative", "positive"),
        metric_names=("accuracy", "f1"),
        primary_metric="accuracy",
        eval_files={"validation": "dev"},
        hub_text_columns=("sentence",),
        text_columns=("sentence",),
        label_column="label",
    ),
    "cola": GlueTaskSpec(
        display="CoLA",
        label_names=("unacceptable", "acceptable"),
        metric_names=("mcc", "accuracy"),
        primary_metric="mcc",
        eval_files={"validation": "dev"},
        hub_text_columns=("sentence",),
        reader=_read_cola,
    ),
    "mnli": GlueTaskSpec(
        display="MNLI",
        label_names=_MNLI_LABELS,
        metric_names=("accuracy",),
        primary_metric="accuracy",
        eval_files={"validation_matched": "dev_matched", "validation_mismatched": "dev_mismatched"},
        hub_text_columns=("premise", "hypothesis"),
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        parse_label=_named_label(_MNLI_LABELS),
    ),
    "qqp": GlueTaskSpec(
        display="QQP",
        label_names=("not_duplicate", "duplicate"),
        metric_names=("accuracy", "f1"),
        primary_metric="accuracy",
        eval_files={"validation": "dev"},
        hub_text_columns=("question1", "question2"),
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
    ),
}


# ---- the handler ------------------------------------------------------------------------------


class GlueHandler(ClassificationHandler):
    """One GLUE task, from the hub or from a folder of original GLUE TSV files."""

    def __init__(self, name: str, glue_task: str, hub_dataset: str = "nyu-mll/glue", **common: Any) -> None:
        super().__init__(name=name, **common)
        # An unknown task is reported by validate() with the valid names, not raised here, so it
        # is listed together with every other config problem.
        self.glue_task = str(getattr(glue_task, "value", glue_task))
        self.hub_dataset = hub_dataset
        known = GLUE_TASKS.get(self.glue_task)
        if known is not None:
            self.label_names = known.label_names
            self.metric_names = known.metric_names
            self.primary_metric = known.primary_metric
            self.eval_set_names = tuple(known.eval_files)

    @property
    def spec(self) -> GlueTaskSpec:
        spec = GLUE_TASKS.get(self.glue_task)
        if spec is None:
            raise ConfigError(self._unknown_task_problem())
        return spec

    def _unknown_task_problem(self) -> ConfigProblem:
        return ConfigProblem(
            key="task.glue_task",
            value=self.glue_task,
            message=f"unknown GLUE task; supported: {', '.join(sorted(GLUE_TASKS))}",
            fix="pick one of task=sst2, task=cola, task=mnli, task=qqp",
        )

    def source(self) -> str:
        if self.data_dir is None:
            return f"hub:{self.hub_dataset}/{self.glue_task}"
        return str(Path(self.data_dir).expanduser())

    # ---- validation (no network, no weights) --------------------------------------------------

    def validate(self) -> list[ConfigProblem]:
        problems = super().validate()
        spec = GLUE_TASKS.get(self.glue_task)
        if spec is None:
            return problems + [self._unknown_task_problem()]
        if self.data_dir is not None:
            problems += self._validate_data_dir(spec)
        return problems

    def _validate_data_dir(self, spec: GlueTaskSpec) -> list[ConfigProblem]:
        folder = Path(self.data_dir).expanduser()
        expected = _expected_files_text(spec)
        fix = (
            f"point task.data_dir at a folder with the original GLUE {spec.display} files "
            f"({expected}), or set task.data_dir=null to load {self.hub_dataset} from the hub"
        )
        if not folder.exists():
            return [_dir_problem(self.data_dir, "directory does not exist", fix)]
        if not folder.is_dir():
            return [_dir_problem(self.data_dir, "is not a directory", fix)]
        missing = [split_file_pattern(s) for s in spec.file_stems if find_split_file(folder, s) is None]
        if missing:
            return [
                _dir_problem(
                    self.data_dir,
                    f"missing {' and '.join(missing)} (expected {expected} for GLUE {spec.display})",
                    fix,
                )
            ]
        problems = []
        if spec.has_header:
            for stem in spec.file_stems:
                path = find_split_file(folder, stem)
                header = read_header(path)
                lacking = [c for c in spec.columns if c not in header]
                if lacking:
                    problems.append(
                        _dir_problem(
                            self.data_dir,
                            f"{path.name} has no column(s) {lacking} in its header (found {header[:12]})",
                            f"use the original GLUE {spec.display} TSV files, whose header names "
                            f"{', '.join(spec.columns)}",
                        )
                    )
        return problems

    # ---- loading ------------------------------------------------------------------------------

    def load_splits(self) -> dict[str, TextExamples]:
        spec = self.spec
        if self.data_dir is None:
            return self._load_hub(spec)
        return self._load_local(spec, Path(self.data_dir).expanduser())

    def _load_local(self, spec: GlueTaskSpec, folder: Path) -> dict[str, TextExamples]:
        problems = self._validate_data_dir(spec)
        if problems:
            raise ConfigError(problems)
        files = {"train": "train", **spec.eval_files}
        return {split: spec.reader(find_split_file(folder, stem), spec) for split, stem in files.items()}

    def _load_hub(self, spec: GlueTaskSpec) -> dict[str, TextExamples]:
        import datasets

        dataset_dict = datasets.load_dataset(self.hub_dataset, self.glue_task)
        return {
            split: _from_hub_split(dataset_dict[split], spec)
            for split in ("train", *spec.eval_files)
        }


def _from_hub_split(split: Any, spec: GlueTaskSpec) -> TextExamples:
    """Hub columns (sentence / premise+hypothesis / question1+question2, label) -> TextExamples."""
    texts = [list(split[column]) for column in spec.hub_text_columns]
    labels = [int(label) for label in split["label"]]
    return TextExamples(texts=texts[0], labels=labels, text_pairs=texts[1] if len(texts) > 1 else None)


def _expected_files_text(spec: GlueTaskSpec) -> str:
    names = [split_file_pattern(stem) for stem in spec.file_stems]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _dir_problem(value: Any, message: str, fix: str) -> ConfigProblem:
    return ConfigProblem(key="task.data_dir", value=value, message=message, fix=fix)
