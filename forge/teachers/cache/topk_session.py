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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from forge.data.causal_collate import teacher_prompt
from forge.decoding.token_logprobs import completion_topk
from forge.losses.divergence import TopKView
from forge.teachers.cache.fingerprint import dataset_fingerprint, digest, model_input_columns, short, tokenizer_fingerprint
from forge.teachers.cache.lock import exclusive
from forge.teachers.cache.store import FORMAT_VERSION, SignalStore, human_bytes
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

    root: Path
    spec: TopKSpec
    backend: Any
    dataset: Any
    collator: Callable[[list[dict]], dict]
    tokenizer: Any
    batch_size: int = 64
    report: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, dict[str, Any]]:
        parts = {
            "format": FORMAT_VERSION, "kind": "topk",
            "teacher": self.backend.identity(),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "inputs": dataset_fingerprint(self.dataset, model_input_columns(self.dataset, TOPK_INPUT_COLUMNS)),
            "k": self.spec.k, "logprob_dtype": self.spec.dtype, "temperature": TEMPERATURE_HANDLING,
        }
        return digest(parts), parts

    def open(self) -> StoredTopK:
        """The store, built first when this key has none (or only a damaged one). With
        `spec.teacher_text` the rows describe the teacher's own completions, written first
        (`dataset` then becomes the teacher-written set the run trains on)."""
        if self.spec.teacher_text is not None:
            self.dataset, self.report["teacher_completions"] = TeacherTextSession(
                root=self.root, spec=self.spec.teacher_text, backend=self.backend, dataset=self.dataset,
                collator=self.collator, tokenizer=self.tokenizer, batch_size=self.batch_size).open()
        key, parts = self.key()
        store = SignalStore(self.root / "signals" / short(key))
        built, waited = False, 0.0
        wanted = self.spec.entries
        if not store.holds(key, wanted):
            with exclusive(store.path / ".lock", f"the teacher top-k store {store.path}") as waited:
                batches = CompletionBatches(self.dataset, self.collator, self.batch_size)
                store.init(key, parts, batches.lengths())
                if store.missing(wanted):
                    seconds = build_topk_entries(store, lambda batch: batch_view(self.backend, batch, self.spec.k),
                                                 batches, self.spec, vocab_size=len(self.tokenizer))
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
