"""Shared base for sentence / sentence-pair classification handlers (GLUE, demo).

A subclass only says where its raw splits come from (`load_splits`) and which labels and metrics
it has; capping, tokenisation, collation, prediction and scoring live here so every
classification task behaves the same way in the trainer and the eval loop.
"""

from __future__ import annotations

import inspect
import random
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from forge.config.errors import ConfigProblem
from forge.data.base import PreparedData, TaskDataHandler
from forge.data.collate import MODEL_INPUT_KEYS, ClassificationCollator
from forge.eval.metrics import classification_metrics

#: names of the raw text columns kept in every prepared dataset (for later analysis tools).
TEXT_COLUMN = "text"
TEXT_PAIR_COLUMN = "text_pair"
LABEL_COLUMN = "label"


@dataclass
class TextExamples:
    """One raw split: texts (and second texts for pair tasks) with integer labels."""

    texts: list[str]
    labels: list[int]
    text_pairs: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels) or (
            self.text_pairs is not None and len(self.text_pairs) != len(self.texts)
        ):
            raise ValueError("texts, text_pairs and labels must have the same length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> "TextExamples":
        return TextExamples(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
        )


def sample_indices(n: int, cap: int | None, seed: int) -> list[int]:
    """Indices of a seeded random subset of size `cap` (all of range(n) when cap is None or >= n).

    A random subset rather than the first N rows, because GLUE files are often sorted (by source,
    genre or length) and a prefix would be unrepresentative. Sorted, so a capped split keeps the
    file's order (the trainer shuffles anyway). `random.Random(int)` is stable across Python
    versions and platforms, so a seed names the same subset everywhere.
    """
    if cap is None or cap >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


def _positive_or_none(key: str, value: Any) -> list[ConfigProblem]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return [
            ConfigProblem(
                key=key,
                value=value,
                message="must be a positive integer or null (null keeps the whole split)",
                fix=f"set {key}=null or a number such as 1000",
            )
        ]
    return []


class ClassificationHandler(TaskDataHandler):
    """Tokenise, cap, collate, predict (argmax) and score a classification task."""

    model_kind = "classification"
    #: label id -> name, in the label-id order of the data (and of the model's logits).
    label_names: tuple[str, ...] = ()
    #: metric names from forge.eval.metrics.CLASSIFICATION_METRICS, primary first by convention.
    metric_names: tuple[str, ...] = ("accuracy",)
    #: eval-set names; the eval loop prefixes metrics with them (validation_matched/accuracy).
    eval_set_names: tuple[str, ...] = ("validation",)

    def __init__(
        self,
        name: str,
        data_dir: str | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        max_length: int = 128,
        seed: int = 42,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.max_length = max_length
        self.seed = seed

    # ---- what a subclass provides -------------------------------------------------------------

    @abstractmethod
    def load_splits(self) -> dict[str, TextExamples]:
        """All raw splits, uncapped: "train" plus one entry per name in `eval_set_names`."""

    def source(self) -> str:
        """Where the data came from, for logs and run metadata."""
        return str(self.data_dir)

    # ---- config-time checks -------------------------------------------------------------------

    def validate(self) -> list[ConfigProblem]:
        problems = _positive_or_none("task.max_train_samples", self.max_train_samples)
        problems += _positive_or_none("task.max_eval_samples", self.max_eval_samples)
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length <= 0:
            problems.append(
                ConfigProblem(
                    key="task.max_length",
                    value=self.max_length,
                    message="must be a positive integer (tokens kept per example after truncation)",
                    fix="set task.max_length=128",
                )
            )
        return problems

    # ---- data ---------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def capped_splits(self) -> dict[str, TextExamples]:
        """`load_splits` with max_train_samples / max_eval_samples applied (seeded subsets)."""
        capped = {}
        for split, examples in self.load_splits().items():
            cap = self.max_train_samples if split == "train" else self.max_eval_samples
            indices = sample_indices(len(examples), cap, self.seed)
            capped[split] = examples if len(indices) == len(examples) else examples.subset(indices)
        return capped

    def tokenize(self, examples: TextExamples, tokenizer: Any) -> Any:
        """Raw split -> datasets.Dataset with text columns, `label` and the tokeniser's outputs.

        The fast tokeniser encodes the whole split in one call (it parallelises internally), which
        is quicker than Dataset.map and avoids map's fingerprinting of the tokenizer object.
        """
        from datasets import Dataset

        encoded = tokenizer(
            examples.texts,
            examples.text_pairs,
            truncation=True,
            max_length=self.max_length,
        )
        columns: dict[str, list] = {TEXT_COLUMN: list(examples.texts)}
        if examples.text_pairs is not None:
            columns[TEXT_PAIR_COLUMN] = list(examples.text_pairs)
        columns[LABEL_COLUMN] = [int(label) for label in examples.labels]
        for key in MODEL_INPUT_KEYS:
            if key in encoded:
                columns[key] = encoded[key]
        return Dataset.from_dict(columns)

    def prepare(self, tokenizer: Any) -> PreparedData:
        splits = self.capped_splits()
        train = self.tokenize(splits["train"], tokenizer)
        eval_sets = {name: self.tokenize(splits[name], tokenizer) for name in self.eval_set_names}
        is_pair = splits["train"].text_pairs is not None
        info = {
            "task": self.name,
            "source": self.source(),
            "label_names": list(self.label_names),
            "text_columns": [TEXT_COLUMN, TEXT_PAIR_COLUMN] if is_pair else [TEXT_COLUMN],
            "num_train": len(train),
            "num_eval": {name: len(ds) for name, ds in eval_sets.items()},
            "metrics": list(self.metric_names),
            "primary_metric": self.primary_metric,
        }
        return PreparedData(
            train=train, eval_sets=eval_sets, collator=ClassificationCollator(tokenizer), info=info
        )

    # ---- prediction and scoring ---------------------------------------------------------------

    @staticmethod
    def model_inputs(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The input tensors of `batch` that `model.forward` accepts, on the model's device.

        Labels stay out (no loss is wanted here). token_type_ids is dropped for models that do not
        take it (DistilBERT) even when the tokenizer produced it, e.g. a BERT tokenizer shared by a
        BERT teacher and a DistilBERT student.
        """
        params = inspect.signature(model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        try:
            device = next(model.parameters()).device
        except StopIteration:  # a parameter-free stub model
            device = None
        inputs = {}
        for key in MODEL_INPUT_KEYS:
            if key in batch and (takes_any or key in params):
                value = batch[key]
                inputs[key] = value.to(device) if device is not None else value
        return inputs

    def predict(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> list[int]:
        with torch.no_grad():
            logits = model(**self.model_inputs(model, batch)).logits
        return [int(i) for i in logits.argmax(dim=-1).tolist()]

    def references(self, batch: Mapping[str, torch.Tensor]) -> list[int]:
        return [int(i) for i in batch["labels"].tolist()]

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return classification_metrics(predictions, references, which=self.metric_names)
