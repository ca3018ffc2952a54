"""The contract every task's data handler follows.

A handler owns everything task-specific about data: where the raw splits come from, how an example
becomes model inputs (tokenisation, prompt masking, later image processing), how a batch is
collated, how a model's outputs become predictions, and which metrics score them. The trainer and
the eval loop stay task-agnostic: classification, translation and OCR handlers plug into the same
slots. Handlers are built from the `task` config group by `_target_`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from forge.config.errors import ConfigProblem


@dataclass
class PreparedData:
    """Model-ready data for one run.

    train: a map-style dataset of feature dicts (already tokenised).
    eval_sets: name -> dataset; several for MNLI (matched / mismatched).
    collator: turns a list of feature dicts into a batch of tensors with `labels` and
      `attention_mask` (and later `pixel_values` for vision-language tasks).
    """

    train: Any
    eval_sets: dict[str, Any]
    collator: Callable[[list[dict]], dict[str, torch.Tensor]]
    info: dict[str, Any] = field(default_factory=dict)
    #: the eval loop's collator when it needs more than training does (references as strings,
    #: left-padded prompts for generation); None: `collator`.
    eval_collator: Optional[Callable[[list[dict]], dict[str, Any]]] = None

    @property
    def evaluation_collator(self) -> Callable[[list[dict]], dict[str, Any]]:
        return self.eval_collator or self.collator


class TaskDataHandler(ABC):
    """Base class for task data handlers.

    Batch keys (what collators produce; trainers pass only `MODEL_INPUT_KEYS` to a model):
      input_ids, attention_mask, labels          every task (labels -100 where no loss is taken:
                                                 prompt and padding tokens of causal LMs)
      token_type_ids                             BERT-style pairs
      prompt_input_ids, prompt_attention_mask    causal LMs: the prompt alone, LEFT-padded, for
                                                 generation (eval, on-policy GKD)
      completion_input_ids, completion_attention_mask
                                                 causal LMs: the target alone (+EOS), right-padded
      teacher_prompt_input_ids, teacher_prompt_attention_mask
                                                 context baking: the teacher's prompt (with the
                                                 context the student does not see), LEFT-padded
      references                                 eval batches only: gold answers (list, any type)
    """

    name: str = "task"
    #: the metric the transfer-gap report and peak tracker use (e.g. "accuracy", "mcc", "bleu").
    primary_metric: str = "accuracy"
    #: "classification" (AutoModelForSequenceClassification) or "causal_lm" / "vision_lm" later.
    model_kind: str = "classification"
    #: True for a handler whose training inputs change between epochs (random crops, token
    #: dropout, re-sampled prompts): the teacher-signal cache then refuses to serve it.
    augments_inputs: bool = False

    def validate(self) -> list[ConfigProblem]:
        """Config-time checks that need no network and no weights (e.g. data_dir has the files)."""
        return []

    @property
    def num_labels(self) -> int:
        raise NotImplementedError

    @abstractmethod
    def prepare(self, tokenizer: Any) -> PreparedData:
        """Load raw splits (capped by max_train/eval_samples) and tokenise them."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> list[Any]:
        """Predictions for one collated batch (argmax label ids, or generated text later)."""

    @abstractmethod
    def references(self, batch: Mapping[str, torch.Tensor]) -> list[Any]:
        """The gold answers for one collated batch, in the form `predict` returns."""

    @abstractmethod
    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        """Score predictions against references (scikit-learn / sacrebleu; never `evaluate`)."""


#: batch keys a model's forward takes; everything else in a batch is for trainers and eval loops.
MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_ids", "attention_mask", "token_type_ids", "labels", "pixel_values", "image_grid_thw",
)


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of a batch that goes into `model(**...)`."""
    return {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
