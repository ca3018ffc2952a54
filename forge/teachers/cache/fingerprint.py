"""Content fingerprints: what a cached teacher signal depends on, hashed.

Why content and not names: two runs may call the same teacher by different paths, and one path may
hold different weights tomorrow (a re-fine-tuned teacher). Hashing the tensors, the vocabulary and
the tokenised inputs themselves means a cache entry is reused exactly when its inputs are the same.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

import numpy as np
import torch


def digest(payload: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def state_dict_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order.

    Tied tensors are hashed once per name, which is still deterministic. About 0.3 s per 100 MB.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """The vocabulary, special tokens, padding side and tokenizer class."""
    return digest({
        "class": type(tokenizer).__name__,
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": {k: str(v) for k, v in (getattr(tokenizer, "special_tokens_map", {}) or {}).items()},
        "padding_side": getattr(tokenizer, "padding_side", None),
    })


def column(dataset: Any, key: str) -> list:
    """One column's values in dataset order (a datasets.Dataset reads it at once; others by row)."""
    if getattr(dataset, "column_names", None) is not None:
        return dataset[key]
    return [dataset[i][key] for i in range(len(dataset))]


def _columns(dataset: Any, keys: Sequence[str]) -> dict[str, list]:
    """Column-wise values of `keys` (a datasets.Dataset reads a column at once; others by row)."""
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return {key: dataset[key] for key in keys if key in names}
    rows = [dataset[i] for i in range(len(dataset))]
    return {key: [row[key] for row in rows] for key in keys if rows and key in rows[0]}


def dataset_fingerprint(dataset: Any, keys: Iterable[str]) -> str:
    """sha256 over the given columns of every example, in dataset order (tokenised inputs: this
    covers the raw data, the subset drawn, the prompt template, truncation and max length; a bytes
    column, such as a page's PNG, is hashed as its bytes)."""
    h = hashlib.sha256()
    columns = _columns(dataset, list(keys))
    h.update(f"n={len(dataset)}|keys={sorted(columns)}|".encode())
    for key in sorted(columns):
        h.update(key.encode())
        for value in columns[key]:  # token ids, labels; or a page's encoded image bytes
            h.update(bytes(value) if isinstance(value, (bytes, bytearray)) else np.asarray(value, dtype=np.int64).tobytes())
            h.update(b"|")
    return h.hexdigest()


def short(key: str) -> str:
    """The directory name of a key (24 hex digits: collisions are not a practical concern)."""
    return key[:24]


def model_input_columns(dataset: Any, candidates: Sequence[str]) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and len(dataset):
        names = list(dataset[0].keys())
    return [key for key in candidates if key in (names or [])]

