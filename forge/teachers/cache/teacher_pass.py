"""One pass of a teacher backend over a decoder training set: what every store built from the
teacher's answers reads (its top-k view of the completions, its own completions of the prompts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from forge.teachers.cache.fingerprint import short
from forge.teachers.cache.store import SignalStore


@dataclass(frozen=True)
class TeacherPass:
    """The teacher (`backend`), the examples it answers (`dataset`, batched by `collator` in batches of
    `batch_size`), the tokenizer whose ids it answers in, and the cache `root` its answers are kept under."""

    root: Path
    backend: Any
    dataset: Any
    collator: Callable[[list[dict]], dict]
    tokenizer: Any
    batch_size: int = 64

    def store(self, key: str) -> SignalStore:
        """The directory that holds the answers stored under `key`."""
        return SignalStore(self.root / "signals" / short(key))
