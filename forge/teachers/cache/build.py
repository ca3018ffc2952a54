"""One pass of the frozen teacher over the training set, writing the missing cache entries.

Examples are batched by length (little padding) and written at their own offsets, so the order
of the pass does not matter. The teacher runs exactly as in an online KD step: eval mode, no
labels, the same collator (right padding), so a cached value equals the online one up to the
storage dtype.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from forge.data.base import model_inputs
from forge.teachers.cache.fingerprint import column as column_values
from forge.teachers.cache.store import (
    SignalStore, attention_offsets, entry_attention, entry_hidden, entry_logits, row_offsets,
)

log = logging.getLogger(__name__)


def example_lengths(dataset: Any, column: str = "input_ids") -> np.ndarray:
    """Real tokens of each (unpadded, tokenised) training example, in `column`."""
    return np.asarray([len(x) for x in column_values(dataset, column)], dtype=np.int64)


def _parse(name: str) -> tuple[str, int]:
    kind, _, index = name.partition("_")
    return (kind, int(index)) if index else (kind, -1)


class _EntryWriters:
    """The entries one pass writes, each created on the first batch that reaches it, once the
    output sizes (classes, width, heads) are known; written at each example's own offsets, so
    the order of the pass does not matter."""

    def __init__(self, store: SignalStore, lengths: np.ndarray, dtype: np.dtype) -> None:
        self.store = store
        self.lengths = lengths
        self.rows = row_offsets(lengths)
        self.dtype = dtype
        self.writers: dict[str, Any] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.attn_starts: dict[str, np.ndarray] = {}

    def logits(self, index: np.ndarray, logits: torch.Tensor) -> None:
        values = logits.float().cpu().numpy()
        if values.ndim != 2:
            raise RuntimeError("the teacher cache stores sequence-level logits only ([B, C])")
        name = entry_logits()
        if name not in self.writers:
            self.writers[name] = self.store.new_entry(name, (len(self.lengths), values.shape[1]), self.dtype)
        self.writers[name].array[index] = values.astype(self.dtype)

    def hidden(self, layer: int, index: np.ndarray, hidden: torch.Tensor) -> None:
        hs = hidden.float().cpu().numpy()
        name, rows, lengths = entry_hidden(layer), self.rows, self.lengths
        if name not in self.writers:
            self.writers[name] = self.store.new_entry(name, (int(rows[-1]), hs.shape[-1]), self.dtype)
        for b, i in enumerate(index):
            self.writers[name].array[rows[i]:rows[i + 1]] = hs[b, :lengths[i]].astype(self.dtype)

    def attention(self, layer: int, index: np.ndarray, attention: torch.Tensor) -> None:
        att = attention.float().cpu().numpy()
        name = entry_attention(layer)
        if name not in self.writers:
            heads = att.shape[1]
            self.attn_starts[name] = attention_offsets(self.lengths, heads)
            self.writers[name] = self.store.new_entry(name, (int(self.attn_starts[name][-1]),), self.dtype)
            self.meta[name] = {"heads": heads}
        starts = self.attn_starts[name]
        for b, i in enumerate(index):
            n = self.lengths[i]
            self.writers[name].array[starts[i]:starts[i + 1]] = att[b, :, :n, :n].astype(self.dtype).reshape(-1)

    def commit(self) -> None:
        for name, w in self.writers.items():
            w.commit(**self.meta.get(name, {}))

    def abort(self) -> None:
        for w in self.writers.values():
            if getattr(w, "array", None) is not None:
                w.abort()


def _check_right_padded(mask: torch.Tensor, lengths: np.ndarray) -> None:
    """Cached rows are cut at each example's dataset length: the collator must pad on the right
    and keep every real token, as in an online KD step."""
    expect = torch.as_tensor(lengths, device=mask.device)
    if not torch.equal(mask.sum(1), expect) or not bool(
            (mask == (torch.arange(mask.shape[1], device=mask.device)[None] < expect[:, None])).all()):
        raise RuntimeError("the teacher cache needs right-padded inputs whose lengths match the dataset's")


@torch.no_grad()
def build_entries(store: SignalStore, teacher: torch.nn.Module, dataset: Any,
                  collator: Callable[[list[dict]], dict], wanted: Sequence[str], *, dtype: np.dtype,
                  batch_size: int = 64, device: torch.device | None = None) -> float:
    """Compute `wanted` entries with one teacher pass; returns the seconds it took."""
    t0 = time.monotonic()
    device = device or next(teacher.parameters()).device
    teacher.eval()
    lengths = store.lengths().astype(np.int64)
    kinds = [_parse(name) for name in wanted]
    want_hidden = [i for k, i in kinds if k == "hidden"]
    want_attn = [i for k, i in kinds if k == "attn"]
    want_logits = any(k == "logits" for k, _ in kinds)
    entries = _EntryWriters(store, lengths, dtype)
    order = np.argsort(lengths, kind="stable")
    try:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = collator([dataset[int(i)] for i in index])
            inputs = {k: v.to(device) for k, v in model_inputs(batch).items() if k != "labels"}
            _check_right_padded(inputs["attention_mask"], lengths[index])
            out = teacher(**inputs, output_hidden_states=bool(want_hidden), output_attentions=bool(want_attn))
            if want_logits:
                entries.logits(index, out.logits)
            for layer in want_hidden:
                entries.hidden(layer, index, out.hidden_states[layer])
            for layer in want_attn:
                entries.attention(layer, index, out.attentions[layer])
        entries.commit()
    except BaseException:
        entries.abort()
        raise
    seconds = time.monotonic() - t0
    log.info("Teacher cache: built %s for %d examples in %.1f s", ", ".join(wanted), len(lengths), seconds)
    return seconds
