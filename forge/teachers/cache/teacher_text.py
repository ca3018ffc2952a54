"""The teacher's own completions of a decoder training set, written once and kept in the cache.

Sequence-level KD (`mode.trainer.seq_kd`) trains on what the teacher writes for each prompt. Live,
the teacher samples a new completion for every off-policy batch. With
`mode.trainer.seq_kd_completions=stored` it writes one completion per training example once, at
the run's sampling temperature and length cap, seeded per batch of the build from
`teacher_strategy.seed`; every run with the same key trains on that teacher-written set (the
top-k store then holds the teacher's view of it). One draw per example is a different estimator
from a fresh draw per step, so this is a choice the user makes, never what `teacher.cache=auto`
does behind a live `seq_kd`.

Stored as one ragged entry of a `SignalStore` (lengths = the completions' lengths, EOS included):

    completion_ids.npy   [sum(len)]   the smallest unsigned integer type that holds the vocabulary
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from forge.data.causal_collate import COMPLETION, TEACHER_PROMPT, teacher_prompt
from forge.decoding.generation import completion_mask
from forge.runtime.seeds import derived_seed, seeded
from forge.teachers.cache.build import example_lengths
from forge.teachers.cache.fingerprint import (
    column, dataset_fingerprint, digest, model_input_columns, tokenizer_fingerprint,
)
from forge.teachers.cache.lock import exclusive
from forge.teachers.cache.store import FORMAT_VERSION, SignalStore, id_dtype_for, row_offsets
from forge.teachers.cache.teacher_pass import TeacherPass

log = logging.getLogger(__name__)

COMPLETION_IDS = "completion_ids"
#: the columns the teacher's completion of an example depends on
PROMPT_COLUMNS = ("prompt_input_ids", TEACHER_PROMPT)


@dataclass(frozen=True)
class TeacherText:
    """How the teacher writes each example's completion: sampled at `temperature`, at most
    `max_new_tokens`, the build's batches seeded from `seed`."""

    max_new_tokens: int
    temperature: float
    seed: int


class TeacherWritten:
    """A training set whose completions are the teacher's: every example as it was, with
    `completion_input_ids` replaced (map-style; columns readable by name as a `datasets.Dataset`'s)."""

    def __init__(self, base: Any, completions: list[list[int]]) -> None:
        if len(completions) != len(base):
            raise ValueError(f"{len(completions)} teacher completions for {len(base)} examples")
        self.base, self.completions = base, completions

    def __len__(self) -> int:
        return len(self.base)

    @property
    def column_names(self) -> list[str]:
        names = getattr(self.base, "column_names", None)
        return list(names) if names is not None else list(self.base[0].keys()) if len(self.base) else []

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.completions if key == COMPLETION else column(self.base, key)
        return {**self.base[int(key)], COMPLETION: self.completions[int(key)]}


def _generate_all(dataset: Any, collator: Callable[[list[dict]], dict], generate: Callable[..., torch.Tensor],
                  spec: TeacherText, eos: list[int], batch_size: int) -> list[list[int]]:
    """One completion per example, batched by prompt length; batch b seeded by (seed, its first index)."""
    order = np.argsort(example_lengths(dataset, "prompt_input_ids"), kind="stable")
    out: list[Optional[list[int]]] = [None] * len(dataset)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collator([dataset[int(i)] for i in index])
        with seeded(derived_seed(spec.seed, f"seq_kd_completions:{int(index[0])}")):
            ids = generate(*teacher_prompt(batch), max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                           do_sample=True, eos_token_id=eos).cpu()
        keep = completion_mask(ids, eos).bool()
        for row, i in enumerate(index):
            out[int(i)] = ids[row][keep[row]].tolist()
    return [row or [] for row in out]


@dataclass(frozen=True)
class TeacherTextSession:
    """The teacher-written training set of one run: read from the cache, or written there first."""

    source: TeacherPass
    spec: TeacherText

    def key(self) -> tuple[str, dict[str, Any]]:
        source = self.source
        parts = {"format": FORMAT_VERSION, "kind": "teacher_completions", "teacher": source.backend.identity(),
                 "tokenizer": tokenizer_fingerprint(source.tokenizer),
                 "prompts": dataset_fingerprint(source.dataset, model_input_columns(source.dataset, PROMPT_COLUMNS)),
                 "generation": asdict(self.spec), "batch_size": source.batch_size}
        return digest(parts), parts

    def open(self) -> tuple[TeacherWritten, dict[str, Any]]:
        """(the teacher-written set, what run_metadata records about it)."""
        key, parts = self.key()
        store = self.source.store(key)
        built_s: Optional[float] = None
        if not store.holds(key, [COMPLETION_IDS]):
            with exclusive(store.path / ".lock", f"the teacher completions {store.path}"):
                if not store.holds(key, [COMPLETION_IDS]):
                    built_s = self._build(store, key, parts)
        lengths = store.lengths().astype(np.int64)
        rows, flat = row_offsets(lengths), np.asarray(store.open(COMPLETION_IDS), dtype=np.int64)
        completions = [flat[rows[i]:rows[i + 1]].tolist() for i in range(len(lengths))]
        report = {"dir": str(store.path), "examples": len(completions), "tokens": int(rows[-1]),
                  "built": built_s is not None, **asdict(self.spec)}
        if built_s is not None:
            report["build_s"] = round(built_s, 2)
        log.info("Teacher-written completions %s: %s (%d examples, %d tokens)", store.path,
                 "built" if built_s is not None else "hit", len(completions), int(rows[-1]))
        return TeacherWritten(self.source.dataset, completions), report

    def _build(self, store: SignalStore, key: str, parts: dict[str, Any]) -> float:
        t0 = time.monotonic()
        source = self.source
        eos = [int(source.tokenizer.eos_token_id)]
        completions = _generate_all(source.dataset, source.collator, source.backend.generate, self.spec, eos,
                                    source.batch_size)
        lengths = np.asarray([len(c) for c in completions], dtype=np.int64)
        store.init(key, parts, lengths)
        entry = store.new_entry(COMPLETION_IDS, (int(lengths.sum()),), id_dtype_for(len(source.tokenizer)))
        try:
            entry.array[:] = np.concatenate([np.asarray(c, dtype=np.int64) for c in completions] or [np.zeros(0)])
            entry.commit(vocab_size=len(source.tokenizer))
        except BaseException:
            entry.abort()
            raise
        seconds = time.monotonic() - t0
        store.record_build([COMPLETION_IDS], seconds)
        return seconds
