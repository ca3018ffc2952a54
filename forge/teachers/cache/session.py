"""Everything a KD run with `teacher.cache` on needs from its frozen teacher, reused where it can.

Three things are shared between runs through the cache root, each keyed by content and built by
one process at a time (the others wait on a file lock, then read):

- the fine-tuned teacher (`teachers/<recipe>`): frozen_sft's fine-tuning, keyed by the teacher's
  spec, the training data with labels, the fine-tuning budget and `teacher_strategy.seed`;
- its signals on the training set (`signals/<key>`): keyed by the teacher's weights, the
  tokenizer, the tokenised inputs (data, preprocessing, max length) and the dtype, with one entry
  per signal (logits, hidden_<layer>, attn_<layer>) so arms that read different layers share the
  same directory and each signal is computed once;
- its scores on the eval sets (`teacher_eval/<key>.json`), so a run need not load the teacher at
  all once the first arm has built everything.
"""

from __future__ import annotations

import contextlib
import logging
import time
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
from forge.teachers.cache.signals import CachedTeacherSignals
from forge.teachers.cache.store import (
    FORMAT_VERSION, SignalStore, entry_attention, entry_hidden, entry_logits, human_bytes,
)

log = logging.getLogger(__name__)

TEACHER_RECORD = "forge_teacher.json"
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

    def recipe_key(self) -> str:
        """What a fine-tuned teacher depends on (frozen_sft): base weights, data, labels, budget, seed."""
        from forge.runtime.metadata import package_versions
        from forge.teachers.strategy import teacher_seed

        ts, tr = self.cfg.teacher_strategy, self.cfg.trainer
        versions = package_versions()
        columns = model_input_columns(self.data.train, (*INPUT_KEYS, "labels", "label"))
        return digest({
            "format": FORMAT_VERSION,
            "teacher": OmegaConf.to_container(self.cfg.model.teacher, resolve=True),
            "task": self.cfg.task.name, "num_labels": getattr(self.data, "info", {}).get("label_names"),
            "data": dataset_fingerprint(self.data.train, columns),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            # the global batch: a fine-tuning over several ranks with the same global batch is the same recipe
            "finetune": {"steps": ts.finetune_steps, "lr": ts.finetune_learning_rate,
                         "batch": ts.finetune_batch_size * self.ranks.world_size, "seed": teacher_seed(self.cfg)},
            "trainer": {k: tr.get(k) for k in ("weight_decay", "lr_scheduler_type", "max_grad_norm",
                                                 "gradient_accumulation_steps", "bf16", "fp16")},
            "packages": {k: versions.get(k) for k in ("torch", "transformers")},
        })

    def _shared_finetuned_teacher(self) -> Path:
        """The sealed fine-tuned teacher for this recipe, fine-tuning it first if nobody has.

        Other jobs wait on the file lock; the ranks of this job follow rank 0's decision and
        fine-tune together (one data-parallel fine-tuning, sealed by rank 0)."""
        from forge.teachers.strategy import sealed_teacher

        key = self.recipe_key()
        path = self.plan.root / "teachers" / short(key)
        main = self.ranks.is_main
        missing = lambda: self.ranks.share(sealed_teacher(path) is None if main else None)  # noqa: E731
        if missing():
            lock = exclusive(self.plan.root / "teachers" / f".{short(key)}.lock", f"the fine-tuned teacher {path}") \
                if main else contextlib.nullcontext()
            with lock:
                if missing():  # another job may have sealed it while rank 0 waited
                    self._finetune_shared(key, path)
        else:
            log.info("Reusing the fine-tuned teacher %s (same recipe)", path)
        self.report["teacher_dir"] = str(path)
        return path

    def _finetune_shared(self, key: str, path: Path) -> None:
        t0 = time.monotonic()

        def record(staged: Path, model: Any) -> None:
            write_json_atomic(staged / TEACHER_RECORD, {"recipe_key": key, "weights_sha256": state_dict_fingerprint(model)})

        teacher = self.finetune_into(path, record)
        if teacher is None:
            raise InterruptedError("stopped while fine-tuning the shared teacher")
        self.teacher = teacher
        self.report["teacher_finetune_s"] = round(time.monotonic() - t0, 2)
        log.info("Fine-tuned the shared teacher into %s", path)

    def fingerprint(self) -> str:
        """sha256 of the teacher's weights (read from the shared teacher's record when it has one)."""
        if self._fingerprint is not None:
            return self._fingerprint
        ts = self.cfg.teacher_strategy
        if ts.finetune_first and not ts.checkpoint:
            self._checkpoint = self._shared_finetuned_teacher()
            self._fingerprint = read_json(self._checkpoint / TEACHER_RECORD)["weights_sha256"]
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
        if store.manifest().get("key") != key or store.missing(wanted):
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
