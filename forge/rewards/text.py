"""Rewards that compare a completion with the task's reference text (the `reference` column).

All strip surrounding whitespace first: a completion's trailing newline is not a translation error.
BLEU and chrF are sacrebleu's own sentence scores, so a reward matches what the eval reports; edit
similarity is rapidfuzz's normalised Levenshtein similarity (the one olmocr uses).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import sacrebleu
from rapidfuzz.distance import Levenshtein

from forge.config.errors import ConfigProblem
from forge.rewards.base import Reward


class ReferenceReward(Reward):
    """A reward computed from each (completion, reference) pair on its own."""

    @abstractmethod
    def score_pair(self, hypothesis: str, reference: str) -> float:
        """The reward of one stripped completion against its stripped reference."""

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        references = self._column(columns, "reference", len(completions))
        return [self.score_pair(str(hyp).strip(), str(ref).strip()) for hyp, ref in zip(completions, references)]


class BLEU(ReferenceReward):
    """Sentence BLEU (sacrebleu's defaults, exponential smoothing) / 100, in [0, 1]."""

    def __init__(self, name: str = "bleu") -> None:
        super().__init__(name)

    def score_pair(self, hypothesis: str, reference: str) -> float:
        return sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100.0


class ChrF(ReferenceReward):
    """Sentence chrF (sacrebleu's defaults) / 100, in [0, 1]: kinder than BLEU to short outputs."""

    def __init__(self, name: str = "chrf") -> None:
        super().__init__(name)

    def score_pair(self, hypothesis: str, reference: str) -> float:
        return sacrebleu.sentence_chrf(hypothesis, [reference]).score / 100.0


class EditSimilarity(ReferenceReward):
    """1 - Levenshtein distance / max(len), in [0, 1] (1 for two empty strings)."""

    def __init__(self, name: str = "edit_similarity") -> None:
        super().__init__(name)

    def score_pair(self, hypothesis: str, reference: str) -> float:
        return float(Levenshtein.normalized_similarity(hypothesis, reference))


def _normalise(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


class ExactMatch(ReferenceReward):
    """1.0 when the completion equals the reference once whitespace runs are collapsed, else 0.0."""

    def __init__(self, name: str = "exact_match", ignore_case: bool = False) -> None:
        super().__init__(name)
        self.ignore_case = ignore_case

    def check(self) -> list[ConfigProblem]:
        if not isinstance(self.ignore_case, bool):
            return [self._problem("ignore_case", "must be true or false", self.ignore_case,
                                  f"set reward.{self.name}.ignore_case=true or false")]
        return []

    def params(self) -> dict[str, Any]:
        return {"ignore_case": self.ignore_case}

    def score_pair(self, hypothesis: str, reference: str) -> float:
        return float(_normalise(hypothesis, self.ignore_case) == _normalise(reference, self.ignore_case))
