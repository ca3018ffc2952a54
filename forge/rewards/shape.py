"""Rewards on a completion's shape rather than its content: its length against the reference's,
and whether it ended properly (an EOS token) without falling into a repetition loop.

Both are meant to be added to a content reward with a small weight (`rl.reward_weights`), so a
policy cannot win by rambling until `max_completion_length` or by stopping after one word.
"""

from __future__ import annotations

import numbers
from typing import Any

from forge.config.errors import ConfigProblem
from forge.rewards.base import Reward, RewardContext, RewardError


class LengthPenalty(Reward):
    """-min(1, max(0, r - tolerance)) with r = |len(hyp) - len(ref)| / max(len(ref), 1) in characters
    (stripped): 0 when the lengths agree within `tolerance`, down to -1 at a doubled or empty output."""

    def __init__(self, name: str = "length_penalty", tolerance: float = 0.0) -> None:
        super().__init__(name)
        self.tolerance = tolerance

    def check(self) -> list[ConfigProblem]:
        return self._fraction_problems(tolerance=self.tolerance)

    def params(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance}

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        references = self._column(columns, "reference", len(completions))
        return [self.penalty(str(h).strip(), str(r).strip()) for h, r in zip(completions, references)]

    def penalty(self, hypothesis: str, reference: str) -> float:
        relative = abs(len(hypothesis) - len(reference)) / max(len(reference), 1)
        return -min(1.0, max(0.0, relative - float(self.tolerance)))


def repeated_fraction(text: str, n: int) -> float:
    """The fraction of the text's word n-grams that repeat an earlier one (0 with no n-gram)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class Format(Reward):
    """The mean of two checks, in {0, 0.5, 1}: (a) the completion ended with an EOS token (it was not
    cut at max_completion_length), read from `completion_ids` and the bound context's EOS ids;
    (b) no repetition loop: at most `max_repeat_fraction` of its word `ngram`-grams repeat."""

    def __init__(self, name: str = "format", ngram: int = 3, max_repeat_fraction: float = 0.2) -> None:
        super().__init__(name)
        self.ngram = ngram
        self.max_repeat_fraction = max_repeat_fraction

    def check(self) -> list[ConfigProblem]:
        problems = self._fraction_problems(max_repeat_fraction=self.max_repeat_fraction)
        if isinstance(self.ngram, bool) or not isinstance(self.ngram, numbers.Integral) or self.ngram < 1:
            problems.append(self._problem("ngram", "must be an integer >= 1", self.ngram,
                                          f"set reward.{self.name}.ngram to 3 (word trigrams) or another n >= 1"))
        return problems

    def params(self) -> dict[str, Any]:
        return {"ngram": self.ngram, "max_repeat_fraction": self.max_repeat_fraction}

    def bind(self, context: RewardContext) -> None:
        if not context.eos_token_ids:
            raise RewardError(f"reward '{self.name}' needs the tokenizer's EOS token ids to tell a finished "
                              "completion from a cut one, and the context has none")
        super().bind(context)

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        eos = set(self._bound().eos_token_ids)
        ids = self._column(columns, "completion_ids", len(completions))
        ended = [bool(row) and int(row[-1]) in eos for row in ids]
        no_loop = [repeated_fraction(str(text), int(self.ngram)) <= self.max_repeat_fraction for text in completions]
        log_metric = columns.get("log_metric")
        if callable(log_metric) and completions:
            log_metric(f"{self.name}/ended_with_eos", sum(ended) / len(ended))
            log_metric(f"{self.name}/no_loop", sum(no_loop) / len(no_loop))
        return [(float(a) + float(b)) / 2.0 for a, b in zip(ended, no_loop)]
