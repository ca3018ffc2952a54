"""The teacher's top-k next-token view on every completion token of a decoder training set.

A dense decoder teacher gives 49k floats per token, too much to store; its top-k view (ids and
log-probabilities renormalised over them, `TopKView`) is k ids and k small floats. Two entries of a
`SignalStore`, ragged over the completion tokens (the store's lengths are completion lengths):

    topk_ids.npy        [sum(len), k]  the smallest unsigned integer type that holds the vocabulary
    topk_logprobs.npy   [sum(len), k]  float16, or bfloat16 kept as its 16-bit pattern (numpy has no
                                       bfloat16): log-probabilities renormalised over the k ids
    topk_tail.npy       [sum(len)]     only for a loss with a tail bucket: log of the teacher's mass
                                       outside the k ids, same dtype

Rows are stored at temperature 1. Over fixed k ids the view re-tempers exactly
(`TopKView.at_temperature`), and the loss does so for its own temperature, so one store serves a
temperature sweep. A position a server could not describe is stored as all −inf and stays left out.

Rounding: a float16 log-probability x is off by at most half an ulp, |x|·2⁻¹¹ (2⁻²⁵ below 2⁻¹⁴);
bfloat16 by |x|·2⁻⁸. Rows are renormalised again when read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from forge.losses.base import ForwardView
from forge.losses.divergence import TopKView
from forge.teachers.cache.build import example_lengths
from forge.teachers.cache.signals import check_batch_lengths
from forge.teachers.cache.store import SignalStore, id_dtype_for, row_offsets
from forge.teachers.cache.teacher_text import TeacherText

log = logging.getLogger(__name__)

TOPK_IDS, TOPK_LOGPROBS, TOPK_TAIL = "topk_ids", "topk_logprobs", "topk_tail"
TOPK_ENTRIES = [TOPK_IDS, TOPK_LOGPROBS]
LOGPROB_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class TopKRequest:
    """What a mode would read from the store (`Mode.stored_view`); the config adds the dtype."""

    k: int
    tail: bool = False
    teacher_text: Optional[TeacherText] = None


@dataclass(frozen=True)
class TopKSpec:
    """What a mode reads from the store: the teacher's top-`k` view, log-probabilities in `dtype`,
    with its tail mass for a loss with a tail bucket (`tail`), of the teacher's own completions when
    `teacher_text` says how it writes them (sequence-level KD from the store)."""

    k: int
    dtype: str = "float16"
    tail: bool = False
    teacher_text: Optional[TeacherText] = None

    @property
    def entries(self) -> list[str]:
        return TOPK_ENTRIES + ([TOPK_TAIL] if self.tail else [])

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.dtype not in LOGPROB_DTYPES:
            raise ValueError(f"top-k log-probabilities are stored as {' or '.join(LOGPROB_DTYPES)}, not {self.dtype}")


def encode_logprobs(values: torch.Tensor, dtype: str) -> np.ndarray:
    """[..., k] float log-probabilities as the stored 16-bit array."""
    if dtype == "bfloat16":
        return values.to(torch.bfloat16).view(torch.int16).cpu().numpy()
    return values.to(torch.float16).cpu().numpy()


def decode_logprobs(stored: np.ndarray, dtype: str) -> torch.Tensor:
    """The stored 16-bit array back as float32 log-probabilities."""
    array = torch.from_numpy(np.array(stored))  # a copy: the memory map is read-only
    return (array.view(torch.bfloat16) if dtype == "bfloat16" else array).float()


def _stored_numpy_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.int16 if dtype == "bfloat16" else np.float16)


def renormalized_rows(logprobs: torch.Tensor) -> torch.Tensor:
    """Rows renormalised over their ids (rounding moved their logsumexp off 0); all −inf rows, a
    position nobody described, stay −inf instead of becoming NaN."""
    empty = torch.isneginf(logprobs).all(dim=-1, keepdim=True)
    safe = logprobs.masked_fill(empty, 0.0).log_softmax(dim=-1)
    return safe.masked_fill(empty, float("-inf"))


class CompletionBatches:
    """The training set's completions in the GKD layout, batched by length for the build pass:
    each batch is the collator's (prompt left-padded, completion right-padded, teacher prompt when
    context baking adds one), so the teacher is asked exactly what a live off-policy step asks."""

    def __init__(self, dataset: Any, collator: Callable[[list[dict]], dict], batch_size: int) -> None:
        self.dataset, self.collator, self.batch_size = dataset, collator, batch_size

    def lengths(self) -> np.ndarray:
        return example_lengths(self.dataset, "completion_input_ids")

    def __iter__(self):
        order = np.argsort(example_lengths(self.dataset, "prompt_input_ids") + self.lengths(), kind="stable")
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield index, self.collator([self.dataset[int(i)] for i in index])


def build_topk_entries(store: SignalStore, score: Callable[[dict[str, Any]], TopKView], batches: CompletionBatches,
                       spec: TopKSpec, vocab_size: int) -> float:
    """One teacher pass writing both entries; `score(batch)` is the teacher's [B, C, k] view of the
    batch's completion tokens at temperature 1. Returns the seconds it took."""
    t0 = time.monotonic()
    lengths = store.lengths().astype(np.int64)
    rows = row_offsets(lengths)
    ids = store.new_entry(TOPK_IDS, (int(rows[-1]), spec.k), id_dtype_for(vocab_size))
    lps = store.new_entry(TOPK_LOGPROBS, (int(rows[-1]), spec.k), _stored_numpy_dtype(spec.dtype))
    tail = store.new_entry(TOPK_TAIL, (int(rows[-1]),), _stored_numpy_dtype(spec.dtype)) if spec.tail else None
    entries = [e for e in (ids, lps, tail) if e is not None]
    try:
        for index, batch in batches:
            view = _checked(score(batch), spec)
            token_ids, logprobs = view.token_ids.cpu(), view.logprobs.float().cpu()
            for b, i in enumerate(index):
                n, at = int(lengths[i]), slice(rows[i], rows[i] + int(lengths[i]))
                ids.array[at] = token_ids[b, :n].numpy().astype(ids.dtype)
                lps.array[at] = encode_logprobs(logprobs[b, :n], spec.dtype)
                if tail is not None:
                    tail.array[at] = encode_logprobs(view.tail[b, :n].float().cpu(), spec.dtype)
        for entry in entries:
            entry.commit(k=spec.k, vocab_size=int(vocab_size), logprob_dtype=spec.dtype)
    except BaseException:
        for entry in entries:
            entry.abort()
        raise
    seconds = time.monotonic() - t0
    log.info("Teacher top-%d store: %d completion tokens of %d examples in %.1f s", spec.k, int(rows[-1]),
             len(lengths), seconds)
    return seconds


def _checked(view: TopKView, spec: TopKSpec) -> TopKView:
    if view.k != spec.k:
        raise RuntimeError(f"the teacher returned a top-{view.k} view; the store holds top-{spec.k}")
    if spec.tail and view.tail is None:
        raise RuntimeError("the teacher backend gave no tail mass; a tail bucket needs teacher_backend=hf")
    return view


class StoredTopK:
    """Memory-mapped top-k views; `view` turns a batch's example indices into the teacher's view of
    its (right-padded) completion tokens, as the live backend would give it at temperature 1."""

    def __init__(self, store: SignalStore, spec: TopKSpec) -> None:
        entries = store.entries()
        self.store, self.spec = store, spec
        self.lengths = store.lengths().astype(np.int64)
        self.rows = row_offsets(self.lengths)
        self.ids = store.open(TOPK_IDS, entries)
        self.logprobs = store.open(TOPK_LOGPROBS, entries)
        self.tail = store.open(TOPK_TAIL, entries) if spec.tail else None

    @property
    def tokens(self) -> int:
        return int(self.rows[-1])

    def view(self, example_index: torch.Tensor, completion_mask: torch.Tensor) -> TopKView:
        """[B, C, k] view for the batch's examples; padding positions: id 0, log-probability −inf."""
        index = example_index.detach().cpu().numpy().astype(np.int64)
        lengths = self.lengths[index]
        check_batch_lengths(self.store, index, lengths, completion_mask.sum(dim=1).cpu().numpy(), "completion tokens")
        batch, width = completion_mask.shape
        ids = torch.zeros(batch, width, self.spec.k, dtype=torch.long)
        lps = torch.full((batch, width, self.spec.k), float("-inf"))
        tail = None if self.tail is None else torch.full((batch, width), float("-inf"))
        for b, (i, n) in enumerate(zip(index, lengths)):
            at = slice(self.rows[i], self.rows[i] + n)
            ids[b, :n] = torch.from_numpy(np.asarray(self.ids[at], dtype=np.int64))
            lps[b, :n] = decode_logprobs(self.logprobs[at], self.spec.dtype)
            if tail is not None:
                tail[b, :n] = decode_logprobs(self.tail[at], self.spec.dtype)
        return TopKView(ids, renormalized_rows(lps), 1.0, tail).to(completion_mask.device)

    def forward_view(self, example_index: torch.Tensor, token_mask: torch.Tensor,
                     target_mask: torch.Tensor | None) -> ForwardView:
        """KD's view (`ForwardView.topk`): the [N, k] rows of the batch's target positions, in the
        order `select_positions(student_logits, target_mask)` gives the student's. A prompt +
        completion batch has one target position per completion token, in order."""
        if target_mask is None:
            raise ValueError("the top-k store describes completion tokens; this batch has no target positions")
        counts = target_mask.sum(dim=1)
        width = int(counts.max()) if counts.numel() else 0
        completion_mask = torch.arange(width, device=counts.device)[None, :] < counts[:, None]
        return ForwardView(topk=self.view(example_index, completion_mask).rows(completion_mask))
