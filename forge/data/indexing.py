"""Carry each training example's dataset index into its batch, so cached signals can be looked up.

The trainer shuffles; the cache is stored in dataset order. Wrapping the dataset and the collator
(instead of changing every task's handler) keeps any handler — classification, translation, later
OCR with images — cache-ready without knowing about it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

EXAMPLE_INDEX_KEY = "example_index"


class IndexedDataset(torch.utils.data.Dataset):
    """`dataset[i]` plus `example_index: i`."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], EXAMPLE_INDEX_KEY: int(index)}


class IndexedCollator:
    """Runs the task's collator on the features without their index, then adds the indices as a
    [B] LongTensor under `example_index`."""

    def __init__(self, collator: Callable[[list[dict]], dict[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        indices = [int(f[EXAMPLE_INDEX_KEY]) for f in features]
        batch = self.collator([{k: v for k, v in f.items() if k != EXAMPLE_INDEX_KEY} for f in features])
        batch[EXAMPLE_INDEX_KEY] = torch.tensor(indices, dtype=torch.long)
        return batch
