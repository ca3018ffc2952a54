"""The contract every task's data handler follows.

A handler owns everything task-specific about data: where the raw splits come from, how an example
becomes model inputs (tokenisation, prompt masking, later image processing), how a batch is
collated, how a model's outputs become predictions, and which metrics score them. The trainer and
the eval loop stay task-agnostic: classification, translation and OCR handlers plug into the same
slots. Handlers are built from the `task` config group by `_target_`.
"""

from __future__ import annotations

import inspect
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from forge.config.errors import ConfigProblem, DataError


@dataclass
class PreparedData:
    """Model-ready data for one run.

    train: a map-style dataset of feature dicts (already tokenised).
    eval_sets: name -> dataset; several for MNLI (matched / mismatched).
    collator: turns a list of feature dicts into a batch of tensors with `labels` and
      `attention_mask` (and later `pixel_values` for vision-language tasks).
    info: what the run records about its data (`TaskDataHandler.describe` plus the family's own
      keys): task, source, sizes, metrics, primary_metric and greater_is_better among them.
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


def sample_indices(n: int, cap: int | None, seed: int) -> list[int]:
    """Indices of a seeded random subset of size `cap` (all of range(n) when cap is None or >= n).

    A random subset rather than the first N rows, because data files are often sorted (by source,
    genre or length) and a prefix would be unrepresentative. Sorted, so a capped split keeps the
    file's order (the trainer shuffles anyway). `random.Random(int)` is stable across Python
    versions and platforms, so a seed names the same subset everywhere.
    """
    if cap is None or cap >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


class TaskDataHandler(ABC):
    """Base class for task data handlers.

    The fields every task has (`TaskConfig`: name, data_dir, max_train_samples, max_eval_samples,
    max_length, seed) are set here once; a subclass declares only its own constructor arguments
    and passes the rest on (`**common`). Every key of a task config is a constructor keyword
    (`instantiate(cfg.task)`); `config_keys()` lists them.

    Batch keys (what collators produce; trainers pass only `MODEL_INPUT_KEYS` to a model):
      input_ids, attention_mask, labels          every task (labels -100 where no loss is taken:
                                                 prompt and padding tokens of causal LMs)
      token_type_ids                             BERT-style pairs
      pixel_values, image_grid_thw               vision-language tasks (from an image processor)
      mm_token_type_ids (prompt_…, teacher_prompt_…)
                                                 vision-language tasks: 1 at image tokens
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
    #: the direction of `primary_metric`: True for scores (accuracy, BLEU), False for error rates.
    greater_is_better: bool = True
    #: the metrics `compute_metrics` returns, primary first by convention.
    metric_names: tuple[str, ...] = ()
    #: eval-set names; the eval loop prefixes metrics with them (validation_matched/accuracy).
    eval_set_names: tuple[str, ...] = ("validation",)
    #: a key of `forge.models.kinds.MODEL_KINDS`: "classification", "causal_lm", "vision_lm".
    model_kind: str = "classification"
    #: True for a handler whose training inputs change between epochs (random crops, token
    #: dropout, re-sampled prompts): the teacher-signal cache then refuses to serve it.
    augments_inputs: bool = False
    #: why the teacher-signal cache cannot serve this task's inputs (None: it can). The cache keys
    #: stored signals by a fingerprint of the token-id columns.
    cache_refusal: Optional[str] = None
    #: prompts hold images (page tasks): a teacher backend must declare `Capabilities.images`.
    reads_images: bool = False
    #: whether `prepare` accepts a `teacher_context` (context baking: text the teacher sees before
    #: each prompt and the student does not). Only tasks with a prompt can place one.
    supports_teacher_context: bool = False

    def __init__(
        self,
        name: str,
        data_dir: Optional[str] = None,
        max_train_samples: Optional[int] = None,
        max_eval_samples: Optional[int] = None,
        max_length: int = 128,
        seed: int = 42,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.max_length = max_length
        self.seed = seed

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """Every constructor keyword of this handler: its own, then those its bases take through
        `**common`, down to the shared fields of `TaskDataHandler.__init__`."""
        keys: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = list(inspect.signature(init).parameters.values())[1:]  # without self
            named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            keys += [p.name for p in params if p.kind in named and p.name not in keys]
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                break
        return tuple(keys)

    def validate(self) -> list[ConfigProblem]:
        """Config-time checks that need no network and no weights (e.g. data_dir has the files).
        Subclasses extend them: `super().validate() + their own`. Numeric ranges (max_length >= 1,
        caps positive or null) are declared on the task's schema and checked with every other key
        (`forge.config.ranges`), so they are not repeated here."""
        return []

    def source(self) -> str:
        """Where the data comes from, for logs and run metadata."""
        return str(self.data_dir)

    @property
    def num_labels(self) -> int:
        raise NotImplementedError

    # ---- raw splits ---------------------------------------------------------------------------

    @abstractmethod
    def load_splits(self) -> dict[str, Any]:
        """All raw splits, uncapped: "train" plus one entry per name in `eval_set_names`. A split
        has `len()` and `subset(indices)` (TextExamples, PromptPairs)."""

    def split_indices(self, split: str, n: int) -> list[int]:
        """The rows of a split of n rows that the caps keep (max_train/eval_samples, seeded)."""
        cap = self.max_train_samples if split == "train" else self.max_eval_samples
        return sample_indices(n, cap, self.seed)

    def load_capped_splits(self) -> dict[str, Any]:
        """`load_splits` with the caps applied. A source that can pick rows before reading them
        (a large hub dataset) overrides this with `split_indices`."""
        capped = {}
        for split, examples in self.load_splits().items():
            indices = self.split_indices(split, len(examples))
            capped[split] = examples if len(indices) == len(examples) else examples.subset(indices)
        return capped

    def capped_splits(self) -> dict[str, Any]:
        """The capped splits `prepare` uses; a split without rows is a DataError (readers of local
        files raise their own, naming the file, before this)."""
        splits = self.load_capped_splits()
        empty = [split for split, examples in splits.items() if not len(examples)]
        if empty:
            raise DataError(
                f"{self.name}: the {' and '.join(empty)} split of {self.source()} has no rows. Fix: "
                "check task.data_dir (or the hub dataset, its config and split names) holds data rows"
            )
        return splits

    # ---- model-ready data ---------------------------------------------------------------------

    @abstractmethod
    def prepare(self, processor: Any, teacher_context: Optional[str] = None) -> PreparedData:
        """Load raw splits (capped by max_train/eval_samples) and turn them into model inputs.

        processor: what turns raw examples into model inputs: a tokenizer for text tasks today, an
          image+text processor (`AutoProcessor`: tokenizer plus image processor) for
          vision-language tasks later.
        teacher_context: context baking: text the teacher sees before each prompt and the student
          does not; only handlers with `supports_teacher_context` accept it (call
          `check_teacher_context` first), the others raise ValueError for anything but None.
        """

    def check_teacher_context(self, teacher_context: Optional[str]) -> None:
        """Refuse a teacher context this handler cannot place, and an empty one."""
        if teacher_context is None:
            return
        if not self.supports_teacher_context:
            raise ValueError(
                f"task {self.name!r} ({type(self).__name__}) does not support a teacher context "
                "(context baking): its examples have no prompt to put the context in. Fix: set "
                "teacher_strategy.context=null, or use a prompt→completion task (e.g. task=europarl_en_fr)"
            )
        if not str(teacher_context).strip():
            raise ValueError("teacher_context is empty; pass None for no context baking")

    def describe(self, train: Any, eval_sets: Mapping[str, Any]) -> dict[str, Any]:
        """The `PreparedData.info` keys every task has; a family adds its own."""
        return {
            "task": self.name,
            "source": self.source(),
            "num_train": len(train),
            "num_eval": {name: len(ds) for name, ds in eval_sets.items()},
            "metrics": list(self.metric_names),
            "primary_metric": self.primary_metric,
            "greater_is_better": self.greater_is_better,
        }

    # ---- prediction and scoring ---------------------------------------------------------------

    @abstractmethod
    def predict(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> list[Any]:
        """Predictions for one collated batch (argmax label ids, or generated text)."""

    @abstractmethod
    def references(self, batch: Mapping[str, torch.Tensor]) -> list[Any]:
        """The gold answers for one collated batch, in the form `predict` returns."""

    @abstractmethod
    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        """Score predictions against references (scikit-learn / sacrebleu; never `evaluate`)."""

    def model_metrics(self, model: torch.nn.Module, set_name: str) -> dict[str, float]:
        """Metrics of the model itself rather than of its predictions on the eval batches (a
        language model's held-out perplexity); none by default."""
        return {}


#: batch keys a model's forward takes; everything else in a batch is for trainers and eval loops.
MODEL_INPUT_KEYS: tuple[str, ...] = (
    "input_ids", "attention_mask", "token_type_ids", "labels", "pixel_values", "image_grid_thw",
    "mm_token_type_ids",
)

#: what a text tokenizer returns that a classification example keeps as model inputs
#: (token_type_ids only if tokenised so); labels are added by the collator.
TOKENIZER_INPUT_KEYS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of a batch that goes into `model(**...)`."""
    return {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
