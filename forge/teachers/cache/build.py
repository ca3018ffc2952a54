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
from forge.teachers.cache.store import (
    SignalStore, attention_offsets, entry_attention, entry_hidden, entry_logits, row_offsets,
)

log = logging.getLogger(__name__)


def example_lengths(dataset: Any) -> np.ndarray:
    """Real tokens of each (unpadded, tokenised) training example."""
    names = getattr(dataset, "column_names", None)
    ids = dataset["input_ids"] if names is not None else [dataset[i]["input_ids"] for i in range(len(dataset))]
    return np.asarray([len(x) for x in ids], dtype=np.int64)


def _parse(name: str) -> tuple[str, int]:
    kind, _, index = name.partition("_")
    return (kind, int(index)) if index else (kind, -1)


@torch.no_grad()
def build_entries(store: SignalStore, teacher: torch.nn.Module, dataset: Any,
                  collator: Callable[[list[dict]], dict], wanted: Sequence[str], *, dtype: np.dtype,
                  batch_size: int = 64, device: torch.device | None = None) -> float:
    """Compute `wanted` entries with one teacher pass; returns the seconds it took."""
    t0 = time.monotonic()
    device = device or next(teacher.parameters()).device
    teacher.eval()
    lengths = store.lengths().astype(np.int64)
    rows = row_offsets(lengths)
    kinds = [_parse(name) for name in wanted]
    want_hidden = [i for k, i in kinds if k == "hidden"]
    want_attn = [i for k, i in kinds if k == "attn"]
    want_logits = any(k == "logits" for k, _ in kinds)

    # Entries are created on the first batch, once the output sizes (classes, width, heads) are known.
    writers: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    attn_starts: dict[str, np.ndarray] = {}
    order = np.argsort(lengths, kind="stable")
    try:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = collator([dataset[int(i)] for i in index])
            inputs = {k: v.to(device) for k, v in model_inputs(batch).items() if k != "labels"}
            mask = inputs["attention_mask"]
            expect = torch.as_tensor(lengths[index], device=mask.device)
            if not torch.equal(mask.sum(1), expect) or not bool(
                    (mask == (torch.arange(mask.shape[1], device=mask.device)[None] < expect[:, None])).all()):
                raise RuntimeError("the teacher cache needs right-padded inputs whose lengths match the dataset's")
            out = teacher(**inputs, output_hidden_states=bool(want_hidden), output_attentions=bool(want_attn))
            if want_logits:
                logits = out.logits.float().cpu().numpy()
                if logits.ndim != 2:
                    raise RuntimeError("the teacher cache stores sequence-level logits only ([B, C])")
                name = entry_logits()
                if name not in writers:
                    writers[name] = store.new_entry(name, (len(lengths), logits.shape[1]), dtype)
                writers[name].array[index] = logits.astype(dtype)
            for layer in want_hidden:
                hs = out.hidden_states[layer].float().cpu().numpy()
                name = entry_hidden(layer)
                if name not in writers:
                    writers[name] = store.new_entry(name, (int(rows[-1]), hs.shape[-1]), dtype)
                for b, i in enumerate(index):
                    writers[name].array[rows[i]:rows[i + 1]] = hs[b, :lengths[i]].astype(dtype)
            for layer in want_attn:
                att = out.attentions[layer].float().cpu().numpy()
                name = entry_attention(layer)
                if name not in writers:
                    heads = att.shape[1]
                    attn_starts[name] = attention_offsets(lengths, heads)
                    writers[name] = store.new_entry(name, (int(attn_starts[name][-1]),), dtype)
                    meta[name] = {"heads": heads}
                starts = attn_starts[name]
                for b, i in enumerate(index):
                    n = lengths[i]
                    writers[name].array[starts[i]:starts[i + 1]] = att[b, :, :n, :n].astype(dtype).reshape(-1)
        for name, w in writers.items():
            w.commit(**meta.get(name, {}))
    except BaseException:
        for w in writers.values():
            if getattr(w, "array", None) is not None:
                w.abort()
        raise
    seconds = time.monotonic() - t0
    log.info("Teacher cache: built %s for %d examples in %.1f s", ", ".join(wanted), len(lengths), seconds)
    return seconds
