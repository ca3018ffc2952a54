"""Shared base for sentence / sentence-pair classification handlers (GLUE, demo).

A subclass only says where its raw splits come from (`load_splits`) and which labels and metrics
it has; capping, tokenisation, collation, prediction and scoring live here so every
classification task behaves the same way in the trainer and the eval loop.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from forge.data.base import TOKENIZER_INPUT_KEYS, PreparedData, TaskDataHandler
from forge.data.collate import ClassificationCollator
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


class ClassificationHandler(TaskDataHandler):
    """Tokenise, cap, collate, predict (argmax) and score a classification task."""

    model_kind = "classification"
    greater_is_better = True  # every classification metric here (accuracy, F1, MCC) is a score
    #: label id -> name, in the label-id order of the data (and of the model's logits).
    label_names: tuple[str, ...] = ()
    #: metric names from forge.eval.metrics.CLASSIFICATION_METRICS, primary first by convention.
    metric_names: tuple[str, ...] = ("accuracy",)

    @abstractmethod
    def load_splits(self) -> dict[str, TextExamples]:
        """All raw splits, uncapped: "train" plus one entry per name in `eval_set_names`."""

    # ---- data ---------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

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
        for key in TOKENIZER_INPUT_KEYS:
            if key in encoded:
                columns[key] = encoded[key]
        return Dataset.from_dict(columns)

    def prepare(self, processor: Any, teacher_context: Optional[str] = None) -> PreparedData:
        """Tokenise the capped splits with `processor` (a tokenizer). No teacher context: a
        classification example has no prompt to put one in (ValueError)."""
        self.check_teacher_context(teacher_context)
        splits = self.capped_splits()
        train = self.tokenize(splits["train"], processor)
        eval_sets = {name: self.tokenize(splits[name], processor) for name in self.eval_set_names}
        is_pair = splits["train"].text_pairs is not None
        info = self.describe(train, eval_sets)
        info["label_names"] = list(self.label_names)
        info["text_columns"] = [TEXT_COLUMN, TEXT_PAIR_COLUMN] if is_pair else [TEXT_COLUMN]
        return PreparedData(
            train=train, eval_sets=eval_sets, collator=ClassificationCollator(processor), info=info
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
        for key in TOKENIZER_INPUT_KEYS:
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
