"""Batch collation for tokenised classification examples.

Datasets keep their raw text columns (analysis tools read them), and the HF Trainer may or may not
strip unused columns (`remove_unused_columns`), so the collator picks the model inputs itself
instead of trusting what reaches it. Padding is dynamic (to the longest example in the batch).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from transformers import DataCollatorWithPadding

from forge.data.base import TOKENIZER_INPUT_KEYS


class ClassificationCollator:
    """List of feature dicts -> {input_ids, attention_mask, [token_type_ids], labels} tensors."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> None:
        self.tokenizer = tokenizer
        self._pad = DataCollatorWithPadding(
            tokenizer, padding="longest", pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt"
        )

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        kept = []
        for feature in features:
            item = {key: feature[key] for key in TOKENIZER_INPUT_KEYS if key in feature}
            label = feature["labels"] if "labels" in feature else feature["label"]
            item["labels"] = int(label)
            kept.append(item)
        batch = self._pad(kept)
        batch["labels"] = batch["labels"].long()
        return dict(batch)
