"""The objects a trainer is built from, passed in as one bundle (no string switches inside)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import nn

from forge.losses.base import DistillationLoss


@dataclass
class TrainingComponents:
    """Everything the pipeline built for one training phase.

    teacher_trainable: the teacher is co-trained on its own CE (cotrain_* strategies) and so its
      parameters join the optimizer and the checkpoint; otherwise it is frozen and kept out of both.
    """

    student: nn.Module
    train_dataset: Any
    collator: Callable[[list[dict]], dict]
    tokenizer: Any = None
    teacher: Optional[nn.Module] = None
    loss: Optional[DistillationLoss] = None
    alpha: float = 0.0
    teacher_trainable: bool = False
    #: mode=gkd: where the teacher's distribution comes from (in-process or a server)
    teacher_backend: Any = None
    #: mode=kd with teacher.cache: the frozen teacher's outputs read from disk (teacher may be None)
    teacher_signals: Any = None

    @property
    def page_prompts(self) -> bool:
        """The prompts hold page images (the tokenizer is a vision-language processor)."""
        return getattr(self.tokenizer, "image_processor", None) is not None

    @property
    def text_tokenizer(self) -> Any:
        """The tokenizer itself (`tokenizer` is a processor for vision-language models)."""
        return getattr(self.tokenizer, "tokenizer", self.tokenizer)
