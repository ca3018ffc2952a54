"""A toy reward whose optimum is known, for real GRPO runs in tests: 1.0 when the completion holds
a given word, else 0.0 (the best policy puts the word in every completion)."""

from __future__ import annotations

from typing import Any

from forge.rewards.base import Reward


class ContainsWord(Reward):
    """1.0 if `word` appears in the completion (case-insensitive, as a substring), else 0.0."""

    def __init__(self, name: str = "contains", word: str = "la") -> None:
        super().__init__(name)
        self.word = word.lower()

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        return [float(self.word in c.lower()) for c in completions]


class NaNReward(Reward):
    """Broken on purpose: NaN for every completion (the run must stop and name it)."""

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        return [float("nan")] * len(completions)
