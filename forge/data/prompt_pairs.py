"""The raw and the tokenised form of a prompt → completion split (`forge.data.prompted`).

Plain containers, apart from the handler that fills them, so that task families and tests can
build and read splits without the handler's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class PromptPairs:
    """One raw split: source texts (what the prompt holds) and target texts (the completions)."""

    sources: list[str]
    targets: list[str]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError("sources and targets must have the same length")

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices: Sequence[int]) -> "PromptPairs":
        return PromptPairs([self.sources[i] for i in indices], [self.targets[i] for i in indices])


@dataclass
class EncodedSplit:
    """One split after tokenisation and truncation (lists aligned by example)."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    fitted_sources: list[str]
    teacher_prompts: list[str] = field(default_factory=list)
    overflowed: int = 0
    truncated_source: int = 0
    truncated_target: int = 0


def first_line(text: str) -> str:
    """The first non-empty line of a generation, stripped (the answer; the rest is run-on)."""
    return text.strip().split("\n", 1)[0].strip()
