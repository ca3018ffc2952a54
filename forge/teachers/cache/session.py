"""Everything a KD run with `teacher.cache` on needs from its frozen teacher, reused where it can.

Three things are shared between runs through the cache root, each keyed by content and built by
one process at a time (the others wait on a file lock, then read):

- the fine-tuned teacher (`teachers/<recipe>`): frozen_sft's fine-tuning, keyed by its recipe
  (`forge.teachers.cache.shared_teacher`, which runs without signal caching too);
- its signals on the training set (`signals/<key>`): keyed by the teacher's weights, the
  tokenizer, the tokenised inputs (data, preprocessing, max length) and the dtype, with one entry
  per signal (logits, hidden_<layer>, attn_<layer>) so arms that read different layers share the
  same directory and each signal is computed once;
- its scores on the eval sets (`teacher_eval/<key>.json`), so a run need not load the teacher at
  all once the first arm has built everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from forge.data.base import MODEL_INPUT_KEYS, PreparedData
from forge.losses.base import DistillationLoss
from forge.runtime.rundir import read_json, write_json_atomic
from forge.teachers.cache.build import build_entries, example_lengths
from forge.teachers.cache.fingerprint import (
    dataset_fingerprint, digest, model_input_columns, short, state_dict_fingerprint, tokenizer_fingerprint,
)
from forge.teachers.cache.lock import exclusive
from forge.teachers.cache.policy import CachePlan
from forge.teachers.cache.shared_teacher import SharedFinetunedTeacher
from forge.teachers.cache.signals import CachedTeacherSignals
from forge.teachers.cache.store import (
    FORMAT_VERSION, SignalStore, entry_attention, entry_hidden, entry_logits, human_bytes,
)

log = logging.getLogger(__name__)

INPUT_KEYS = tuple(k for k in MODEL_INPUT_KEYS if k != "labels")


def wanted_entries(loss: DistillationLoss, num_layers: int) -> list[str]:
    """Entry names the (bound) loss reads: logits, and only the mapped layers' hidden states and
    attention maps (every layer when a loss does not say which)."""
    needs, layers = loss.needs, loss.teacher_layers()
    names = [entry_logits()] if needs.logits else []
    if needs.hidden_states:
        hidden = range(num_layers + 1) if layers.hidden is None else sorted(layers.hidden)
        names += [entry_hidden(i) for i in hidden]
    if needs.attentions:
        attn = range(num_layers) if layers.attentions is None else sorted(layers.attentions)
        names += [entry_attention(i) for i in attn]
    return names


@dataclass
class TeacherCacheSession:
    """Obtains the teacher's signals for one run (see the module docstring)."""

    cfg: DictConfig
    plan: CachePlan
    data: PreparedData
    tokenizer: Any
    loss: DistillationLoss
    num_layers: int
    #: loads the teacher (from `checkpoint` when given), ready to use (`forge.teachers.provider`)
    load_teacher: Callable[[Optional[Path]], torch.nn.Module]
    #: fine-tunes a freshly loaded teacher and seals it into `out_dir`; None when stopped by a signal
    finetune_into: Callable[[Path, Callable[[Path, Any], None]], Optional[torch.nn.Module]]
    device: torch.device = torch.device("cpu")
    #: the job's ranks: rank 0 decides, locks and writes; one process when None
    ranks: Any = None
    teacher: Optional[torch.nn.Module] = None
    report: dict[str, Any] = field(default_factory=dict)
    _fingerprint: Optional[str] = None
    _checkpoint: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.ranks is None:
            from forge.runtime.ranks import RankContext

            self.ranks = RankContext()

    # ---- the teacher ----------------------------------------------------------------------------

    def shared_teacher(self) -> SharedFinetunedTeacher:
        """frozen_sft's fine-tuned teacher, shared by every run of the same recipe."""
        return SharedFinetunedTeacher(cfg=self.cfg, data=self.data, tokenizer=self.tokenizer, root=self.plan.root,
                                      ranks=self.ranks, finetune_into=self.finetune_into)

    def fingerprint(self) -> str:
        """sha256 of the teacher's weights (read from the shared teacher's record when it has one)."""
        if self._fingerprint is not None:
            return self._fingerprint
        ts = self.cfg.teacher_strategy
        if ts.finetune_first and not ts.checkpoint:
            shared = self.shared_teacher()
            self._checkpoint = shared.obtain()
            self.teacher = shared.model  # fine-tuned here just now: no need to load it back
            self.report.update(shared.report)
            self._fingerprint = shared.weights_fingerprint(self._checkpoint)
        else:
            self._fingerprint = state_dict_fingerprint(self.model())
        return self._fingerprint

    def model(self) -> torch.nn.Module:
        """The teacher's weights, loaded on first use only."""
        if self.teacher is None:
            self.teacher = self.load_teacher(self._checkpoint)
        return self.teacher

    def release(self) -> None:
        """Drop the teacher: training reads the cache, so the weights need not stay in memory."""
        self.teacher = None

    # ---- signals --------------------------------------------------------------------------------

    def signal_key(self) -> tuple[str, dict[str, Any]]:
        parts = {
            "format": FORMAT_VERSION,
            "teacher_weights": self.fingerprint(),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "inputs": dataset_fingerprint(self.data.train, model_input_columns(self.data.train, INPUT_KEYS)),
            "max_length": self.cfg.task.get("max_length"),
            "dtype": self.plan.dtype,
        }
        return digest(parts), parts

    def signals(self) -> Optional[CachedTeacherSignals]:
        """Open the cached signals this run's loss reads, building missing entries first (None when
        the loss reads nothing: `ce`, the control arm, still shares the teacher and its scores)."""
        wanted = wanted_entries(self.loss, self.num_layers)
        if not wanted:
            self.report.update(entries=[], built=[], reused=[])
            return None
        key, parts = self.signal_key()
        store = SignalStore(self.plan.root / "signals" / short(key))
        built: list[str] = []
        waited = 0.0
        if not store.holds(key, wanted):
            with exclusive(store.path / ".lock", f"the teacher cache {store.path}") as waited:
                store.init(key, parts, example_lengths(self.data.train))
                missing = store.missing(wanted)
                if missing:
                    seconds = build_entries(store, self.model().to(self.device), self.data.train, self.data.collator,
                                            missing, dtype=np.dtype(self.plan.dtype),
                                            batch_size=self.plan.batch_size, device=self.device)
                    built = missing
                    store.record_build(missing, seconds)
                    self.report["build_s"] = round(seconds, 2)
        size = store.size_bytes()
        self.report.update(dir=str(store.path), key=key, entries=wanted, built=built,
                           reused=[e for e in wanted if e not in built], size_bytes=size, waited_s=round(waited, 2))
        log.info("Teacher cache %s: %s (%s on disk; built now: %s; reused: %s)", store.path,
                 "hit" if not built else "built", human_bytes(size), ", ".join(built) or "none",
                 ", ".join(self.report["reused"]) or "none")
        return CachedTeacherSignals(store, needs=self.loss.needs, hidden=_layers(wanted, "hidden_"),
                                    attentions=_layers(wanted, "attn_"), num_layers=self.num_layers)

    # ---- teacher scores -------------------------------------------------------------------------

    def teacher_metrics(self, score: Callable[[torch.nn.Module], dict[str, float]],
                        eval_sets: dict[str, Any]) -> dict[str, float]:
        """The frozen teacher's eval scores, computed once per (teacher, eval data)."""
        key = digest({
            "teacher_weights": self.fingerprint(), "task": self.cfg.task.name,
            "eval": {name: dataset_fingerprint(ds, model_input_columns(ds, (*INPUT_KEYS, "labels", "label")))
                     for name, ds in eval_sets.items()},
            "extra": OmegaConf.to_container(self.cfg.task, resolve=True),
        })
        path = self.plan.root / "teacher_eval" / f"{short(key)}.json"
        if path.is_file():
            self.report["teacher_eval"] = "reused"
            return read_json(path)["metrics"]
        metrics = score(self.model())
        if self.ranks.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"key": key, "metrics": metrics})
        self.report["teacher_eval"] = "computed"
        return metrics


def _layers(names: Sequence[str], prefix: str) -> frozenset[int]:
    return frozenset(int(n[len(prefix):]) for n in names if n.startswith(prefix))
