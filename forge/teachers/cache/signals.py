"""The teacher's side of a distillation step, read from the cache instead of computed.

`CachedTeacherSignals.view` turns a batch's example indices into the same `ForwardView` a frozen
teacher's forward pass would give, padded to the batch's length: hidden states and attention maps
at the cached layers (None at layers no loss reads), logits for sequence-level tasks. Padding
positions are zero; every loss masks them out (`LossBatch.token_mask` / `rows_mask`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from forge.losses.base import ForwardView, Needs
from forge.teachers.cache.store import (
    SignalStore, attention_offsets, entry_attention, entry_hidden, entry_logits, row_offsets,
)


class CacheMismatchError(RuntimeError):
    """A batch does not match the cache (lengths differ): the data changed under the same key."""


def check_batch_lengths(store: SignalStore, index: np.ndarray, lengths: np.ndarray, real: np.ndarray,
                        what: str = "tokens") -> None:
    """Raise CacheMismatchError unless the batch's real lengths are the ones the store holds."""
    if not np.array_equal(lengths, real):
        raise CacheMismatchError(
            f"teacher cache {store.path} holds {lengths.tolist()} {what} for examples {index.tolist()} but the "
            f"batch has {real.tolist()}: the data changed under the same cache key. Delete that directory or set "
            "teacher.cache=off.")


class CachedTeacherSignals:
    """Memory-mapped teacher outputs for one training set; cheap to index per batch."""

    def __init__(self, store: SignalStore, *, needs: Needs, hidden: frozenset[int], attentions: frozenset[int],
                 num_layers: int) -> None:
        self.store = store
        self.needs = needs
        self.num_layers = num_layers
        entries = store.entries()
        self.lengths = store.lengths().astype(np.int64)
        self.row_offsets = row_offsets(self.lengths)
        self.logits = store.open(entry_logits(), entries) if needs.logits else None
        self.hidden = {i: store.open(entry_hidden(i), entries) for i in sorted(hidden)} if needs.hidden_states else {}
        self.attentions = ({i: store.open(entry_attention(i), entries) for i in sorted(attentions)}
                           if needs.attentions else {})
        self.heads = {i: int(entries[entry_attention(i)]["heads"]) for i in self.attentions}
        self.attn_offsets = {i: attention_offsets(self.lengths, self.heads[i]) for i in self.attentions}

    def _check(self, index: np.ndarray, token_mask: torch.Tensor) -> np.ndarray:
        lengths = self.lengths[index]
        check_batch_lengths(self.store, index, lengths, token_mask.sum(dim=1).cpu().numpy())
        return lengths

    def forward_view(self, example_index: torch.Tensor, token_mask: torch.Tensor,
                     target_mask: Optional[torch.Tensor]) -> ForwardView:
        """What KD's module reads in place of the teacher's forward pass (`view`; the target mask
        matters only to a store of target-position rows)."""
        return self.view(example_index, token_mask)

    def view(self, example_index: torch.Tensor, token_mask: torch.Tensor) -> ForwardView:
        """The cached teacher outputs for a right-padded batch ([B] indices, [B, T] mask)."""
        index = example_index.detach().cpu().numpy().astype(np.int64)
        lengths = self._check(index, token_mask)
        device, (batch, width) = token_mask.device, token_mask.shape
        logits = None
        if self.logits is not None:
            logits = torch.from_numpy(np.asarray(self.logits[index], dtype=np.float32)).to(device)
        hidden_states: Optional[tuple] = None
        if self.hidden:
            layers: list[Optional[torch.Tensor]] = [None] * (self.num_layers + 1)
            for layer, rows in self.hidden.items():
                out = np.zeros((batch, width, rows.shape[1]), dtype=np.float32)
                for b, (i, n) in enumerate(zip(index, lengths)):
                    start = self.row_offsets[i]
                    out[b, :n] = rows[start:start + n]
                layers[layer] = torch.from_numpy(out).to(device)
            hidden_states = tuple(layers)
        attentions: Optional[tuple] = None
        if self.attentions:
            maps: list[Optional[torch.Tensor]] = [None] * self.num_layers
            for layer, flat in self.attentions.items():
                heads, offsets = self.heads[layer], self.attn_offsets[layer]
                out = np.zeros((batch, heads, width, width), dtype=np.float32)
                for b, (i, n) in enumerate(zip(index, lengths)):
                    out[b, :, :n, :n] = flat[offsets[i]:offsets[i + 1]].reshape(heads, n, n)
                maps[layer] = torch.from_numpy(out).to(device)
            attentions = tuple(maps)
        return ForwardView(logits=logits, hidden_states=hidden_states, attentions=attentions)
