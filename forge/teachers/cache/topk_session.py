"""The stored top-k teacher view of one decoder run: keyed by content, built once, then read.

The key holds everything the stored rows depend on: the teacher (its weights' sha256 in process,
the served model's identity behind a server), the tokenizer, the tokenised prompts and completions
(the prompt template, the teacher's own prompt under context baking, max length), k, the
log-probability dtype and the temperature handling (rows at temperature 1, re-tempered on read).
A run with another k, tokenizer or template gets another directory and never reads this one.

One process builds a missing store under the directory's lock while the others wait, then all
read it; with several ranks, rank 0 builds first (`RankContext.main_first`). A store whose files
were truncated is not trusted: its entries drop out (`SignalStore.entries` checks each file's
recorded size) and the pass runs again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from forge.data.causal_collate import teacher_prompt
from forge.decoding.token_logprobs import completion_topk
from forge.losses.divergence import TopKView
from forge.teachers.cache.fingerprint import dataset_fingerprint, digest, model_input_columns, tokenizer_fingerprint
from forge.teachers.cache.lock import exclusive
from forge.teachers.cache.store import FORMAT_VERSION, SignalStore, human_bytes
from forge.teachers.cache.teacher_pass import TeacherPass
from forge.teachers.cache.teacher_text import TeacherTextSession
from forge.teachers.cache.topk_store import (
    CompletionBatches, StoredTopK, TopKSpec, build_topk_entries,
)

log = logging.getLogger(__name__)

#: the columns a completion's teacher view depends on
TOPK_INPUT_COLUMNS = ("prompt_input_ids", "completion_input_ids", "teacher_prompt_input_ids")
#: how temperature enters the key: rows are stored at T = 1 and re-tempered exactly on read
TEMPERATURE_HANDLING = "rows at temperature 1, re-tempered over the k ids on read"


def batch_view(backend: Any, batch: dict[str, Any], k: int) -> TopKView:
    """The backend's [B, C, k] view of a collated batch's completion tokens at temperature 1,
    asked exactly as a live off-policy GKD step asks it (the teacher's own prompt when it has one)."""
    return completion_topk(backend, *teacher_prompt(batch), batch["completion_input_ids"],
                           batch["completion_attention_mask"], k, 1.0)


@dataclass
class TopKStoreSession:
    """Obtains the store for one run (see the module docstring)."""

    source: TeacherPass
    spec: TopKSpec
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def train_set(self) -> Any:
        """The examples the stored rows describe: the task's training set, or after `open()` with
        `spec.teacher_text` the teacher-written set that replaces it."""
        return self.source.dataset

    def key(self) -> tuple[str, dict[str, Any]]:
        source = self.source
        parts = {
            "format": FORMAT_VERSION, "kind": "topk",
            "teacher": source.backend.identity(),
            "tokenizer": tokenizer_fingerprint(source.tokenizer),
            "inputs": dataset_fingerprint(source.dataset, model_input_columns(source.dataset, TOPK_INPUT_COLUMNS)),
            "k": self.spec.k, "logprob_dtype": self.spec.dtype, "temperature": TEMPERATURE_HANDLING,
        }
        return digest(parts), parts

    def open(self) -> StoredTopK:
        """The store, built first when this key has none (or only a damaged one). With
        `spec.teacher_text` the rows describe the teacher's own completions, written first
        (`train_set` then becomes the teacher-written set the run trains on)."""
        if self.spec.teacher_text is not None:
            written, self.report["teacher_completions"] = TeacherTextSession(self.source, self.spec.teacher_text).open()
            self.source = replace(self.source, dataset=written)
        key, parts = self.key()
        source, store = self.source, self.source.store(key)
        built, waited = False, 0.0
        wanted = self.spec.entries
        if not store.holds(key, wanted):
            with exclusive(store.path / ".lock", f"the teacher top-k store {store.path}") as waited:
                batches = CompletionBatches(source.dataset, source.collator, source.batch_size)
                store.init(key, parts, batches.lengths())
                if store.missing(wanted):
                    seconds = build_topk_entries(store, lambda batch: batch_view(source.backend, batch, self.spec.k),
                                                 batches, self.spec, vocab_size=len(source.tokenizer))
                    store.record_build(wanted, seconds)
                    self.report["build_s"] = round(seconds, 2)
                    built = True
        stored = StoredTopK(store, self.spec)
        self._describe(store, key, stored, built, waited)
        return stored

    def _describe(self, store: SignalStore, key: str, stored: StoredTopK, built: bool, waited: float) -> None:
        entries = store.entries()
        wanted = self.spec.entries
        size = sum(int(entries[name]["bytes"]) for name in wanted)
        per_token = size / max(stored.tokens, 1)
        self.report.update(used=True, kind="topk", dir=str(store.path), key=key, k=self.spec.k,
                           logprob_dtype=self.spec.dtype, id_dtype=entries["topk_ids"]["dtype"],
                           tokens=stored.tokens, size_bytes=size, bytes_per_token=round(per_token, 1),
                           built=wanted if built else [], reused=[] if built else wanted, tail=self.spec.tail,
                           waited_s=round(waited, 2))
        log.info("Teacher top-%d store %s: %s (%s for %d completion tokens, %.0f bytes/token)", self.spec.k,
                 store.path, "built" if built else "hit", human_bytes(size), stored.tokens, per_token)
