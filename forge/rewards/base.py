"""The reward interface: what GRPO's trainer, the config check and run metadata code against.

TRL calls a reward function as `f(completions, **columns) -> list[float]` and turns the result into
a tensor without asking what it holds: a `None` becomes NaN, a NaN poisons the group's advantage
and a string fails deep inside torch. `Reward.__call__` checks every value first, so a broken
reward stops the run with a message naming the reward and the completion, not a silent NaN loss.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

from forge.config.errors import ConfigProblem, ForgeFailure


class RewardError(ForgeFailure):
    """A reward cannot score (unbound, a missing column) or gave values GRPO cannot use."""


@dataclass
class RewardContext:
    """What a reward is bound to when the trainer starts: the student's tokenizer and special ids,
    and the teacher backend (a `forge.decoding.scoring.TeacherScorer`) when a reward needs one.
    teacher_top_k None reads dense teacher logits; N reads the backend's top-N view."""

    tokenizer: Any
    eos_token_ids: list[int]
    pad_token_id: int
    teacher: Any = None
    teacher_top_k: Optional[int] = None
    temperature: float = 1.0


def _describe_value(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


class Reward(ABC):
    """One reward function. Subclasses implement `score`; callers use `__call__` (TRL's shape)."""

    needs_teacher: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.__name__ = name  # TRL names a reward function's logged columns by __name__
        self.context: Optional[RewardContext] = None

    @abstractmethod
    def score(self, completions: list[str], **columns: Any) -> list[float]:
        """One reward per completion; columns the reward does not use are ignored."""

    def __call__(self, completions: list[str], **columns: Any) -> list[float]:
        values = self.score(completions, **columns)
        return self._validated(values, len(completions))

    def _validated(self, values: Any, expected: int) -> list[float]:
        """The values as floats, or a RewardError saying which value is wrong and why."""
        try:
            values = list(values)
        except TypeError:
            raise RewardError(f"reward '{self.name}' returned {_describe_value(values)}, not a list of numbers")
        if len(values) != expected:
            raise RewardError(f"reward '{self.name}' returned {len(values)} values for {expected} completions")
        out = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise RewardError(f"reward '{self.name}' returned {_describe_value(value)} for completion {i}, "
                                  "not a number")
            number = float(value)
            if math.isnan(number):
                raise RewardError(f"reward '{self.name}' returned NaN for completion {i}")
            if math.isinf(number):
                raise RewardError(f"reward '{self.name}' returned {number} for completion {i}: rewards must be finite")
            out.append(number)
        return out

    def check(self) -> list[ConfigProblem]:
        """Config-time problems with this reward's own parameters (before any weights load)."""
        return []

    def bind(self, context: RewardContext) -> None:
        """Runtime: the trainer hands over the tokenizer, special ids and teacher before training."""
        self.context = context

    def params(self) -> dict[str, Any]:
        """This reward's options, as recorded in run metadata."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What `run_metadata.json` records about this reward."""
        cls = type(self)
        return {"name": self.name, "class": f"{cls.__module__}.{cls.__qualname__}", "params": self.params()}

    def _problem(self, option: str, message: str, value: Any, fix: str) -> ConfigProblem:
        return ConfigProblem(key=f"reward.{self.name}.{option}", message=message, value=value, fix=fix)

    def _fraction_problems(self, **options: Any) -> list[ConfigProblem]:
        """Problems for options that must be numbers in [0, 1]."""
        problems = []
        for option, value in options.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
                problems.append(self._problem(option, "must be a number in [0, 1]", value,
                                              f"set reward.{self.name}.{option} between 0 and 1"))
        return problems

    def _column(self, columns: dict[str, Any], key: str, count: int) -> Sequence[Any]:
        """A per-completion column the reward needs, or a RewardError naming what is missing."""
        value = columns.get(key)
        if value is None:
            raise RewardError(f"reward '{self.name}' needs the '{key}' column, which the trainer did not pass "
                              f"(got columns: {sorted(columns)})")
        if len(value) != count:
            raise RewardError(f"reward '{self.name}': column '{key}' has {len(value)} rows for {count} completions")
        return value

    def _bound(self) -> RewardContext:
        if self.context is None:
            raise RewardError(f"reward '{self.name}' was called before it was bound: the mode must call "
                              "reward.bind(RewardContext(...)) before training")
        return self.context
