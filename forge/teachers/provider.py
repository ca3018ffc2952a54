"""The teacher a run needs, as one object with four named kinds.

    live       the configured weights (pretrained, or `teacher_strategy.checkpoint`), in this process
    finetuned  fine-tuned on the task first (frozen_sft / cotrain_sft): a frozen one is shared by
               every run of its recipe (`forge.teachers.cache.shared_teacher`), a co-trained one is
               sealed in <run>/teacher_sft; either is reloaded on resume
    cached     a frozen teacher read from the teacher-signal cache: its weights load only to build
               missing signals or to be scored once; training never runs it
    served     a remote teacher behind a backend (an OpenAI-compatible / vLLM server): no weights here

The kind is decided by the plan from the config alone (`teacher_kind`); `TeacherProvider.obtain`
returns a `Teacher` in the form the mode reads it (`TeacherNeeds.via`): a model for forward passes
(or the cached signals standing in for it), or a backend. The attention rule lives here once: a
teacher is fine-tuned on SDPA (its own fine-tuning never needs attention maps) and switched to the
run's attention implementation (eager when a loss reads attention maps) before it is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import hydra.utils
from torch import nn

from forge.config.errors import ConfigError, ConfigProblem

log = logging.getLogger(__name__)


class TeacherKind(str, Enum):
    live = "live"
    finetuned = "finetuned"
    cached = "cached"
    served = "served"


def teacher_kind(cfg: Any, *, backend_cls: Optional[type], cache_enabled: bool) -> TeacherKind:
    """Which kind of teacher a run with a teacher gets (decided before anything loads)."""
    if backend_cls is not None and not backend_cls.needs_local_model:
        return TeacherKind.served
    if cache_enabled:
        return TeacherKind.cached
    ts = cfg.teacher_strategy
    if ts.finetune_first and not ts.checkpoint:
        return TeacherKind.finetuned
    return TeacherKind.live


@dataclass
class Teacher:
    """The teacher as the trainer reads it.

    model: run by the trainer (live / finetuned with `via="model"`); None when cached or served.
    backend: scores sequences (`via="backend"`: wraps the model in-process, or talks to a server).
    signals: the cached signals standing in for the model's forward pass, or the stored top-k
      view standing in for the backend on off-policy batches (`store` obtained it).
    trainable: co-trained (its parameters join the student's optimizer and checkpoints).
    train_set: the examples the run trains on instead of the task's (the teacher's stored completions
      under `seq_kd_completions=stored`); None: the task's own.
    """

    kind: TeacherKind
    model: Optional[nn.Module] = None
    backend: Any = None
    signals: Any = None
    trainable: bool = False
    session: Any = None
    store: Any = None
    train_set: Any = None
    report: dict[str, Any] = field(default_factory=dict)

    def cache_report(self) -> Optional[dict[str, Any]]:
        """What run_metadata.json records under `teacher_cache` (None: the cache was not used)."""
        owner = self.session if self.session is not None else self.store
        return None if owner is None else owner.report

    def scores(self, score: Callable[[nn.Module], dict[str, float]], eval_sets: dict[str, Any]) -> Optional[dict]:
        """The teacher's eval scores (a cached teacher's come from the shared store); None for a
        served teacher, which Forge does not score."""
        if self.session is not None:
            return self.session.teacher_metrics(score, eval_sets)
        if self.model is not None:
            return score(self.model)
        backend_model = getattr(self.backend, "model", None)
        return score(backend_model) if backend_model is not None else None

    def after_pre_eval(self) -> None:
        """A cached teacher's weights are no longer needed once it has been scored."""
        if self.session is not None:
            self.session.release()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


@dataclass
class TeacherProvider:
    """Obtains the `Teacher` of one run (see the module docstring).

    finetune: `forge.trainers.teacher_finetune.finetune_teacher`-shaped callable (passed in, so
    teachers never import trainers): (model, out_dir, on_sealing) -> model, or None when a stop
    signal interrupted it.
    """

    cfg: Any
    plan: Any
    data: Any
    processor: Any
    run_dir: Path
    ranks: Any
    finetune: Callable[[nn.Module, Path, Optional[Callable[[Path, Any], None]]], Optional[nn.Module]]

    # ---- loading: the one place that knows the attention rule and the head's seed -------------

    def load(self, checkpoint: Optional[Path] = None, *, for_finetuning: bool = False) -> nn.Module:
        """The teacher's weights (its new head drawn from `teacher_strategy.seed`), on this rank's
        device; on SDPA when about to be fine-tuned, else the run's attention implementation."""
        from forge.teachers.strategy import load_teacher_for

        attn = "sdpa" if for_finetuning else self.plan.attn_implementation
        model = load_teacher_for(self.cfg, self.plan.handler, self.processor, attn_implementation=attn,
                                 checkpoint=checkpoint).to(self.ranks.device)
        return model if for_finetuning else model.eval()

    def finetune_into(self, out_dir: Path, on_sealing: Optional[Callable[[Path, Any], None]] = None) -> Optional[nn.Module]:
        """Load the teacher fresh, fine-tune it and seal it into `out_dir`; None when interrupted."""
        trained = self.finetune(self.load(for_finetuning=True), Path(out_dir), on_sealing)
        if trained is None:
            return None
        if self.plan.attn_implementation != "sdpa":
            trained.set_attn_implementation(self.plan.attn_implementation)
        return trained.eval()

    # ---- the four kinds -------------------------------------------------------------------------

    def obtain(self) -> Optional[Teacher]:
        """The teacher this run needs (None for a mode without one). Raises InterruptedError when a
        stop signal interrupted the teacher's fine-tuning.

        With several ranks: rank 0 converts a packaged teacher and builds the signal cache first
        while the others wait, then they read what it built; a fine-tuning is one data-parallel
        job over every rank, sealed by rank 0."""
        kind = self.plan.teacher_kind
        if kind is None:
            return None
        if kind != TeacherKind.served:
            with self.ranks.main_first():  # loading the teacher's tokenizer converts a packaged model once
                self._check_shared_vocabulary()
        teacher = {TeacherKind.served: self._served, TeacherKind.cached: self._cached,
                   TeacherKind.finetuned: self._finetuned, TeacherKind.live: self._live}[kind]()
        reads_store = self.plan.cache is not None and self.plan.cache.enabled and self.plan.cache.topk is not None
        if (self.plan.teacher_needs.via == "backend" or reads_store) and teacher.backend is None:
            # mode=kd reading the top-k store: the backend builds it; training reads only the store
            teacher.backend = self._backend(model=teacher.model)
            teacher.model = None
        if teacher.backend is not None:
            if self.plan.teacher_needs.reads_tokens:  # token-level distillation: one vocabulary, checked
                teacher.backend.check_tokenizer(self._tokenizer())
            else:  # generations only: their text is re-tokenized with the student's tokenizer
                teacher.backend.adopt_tokenizer(self._tokenizer())
            teacher.report["backend"] = teacher.backend.describe()
            log.info("Teacher backend: %s", teacher.report["backend"])
            if reads_store:
                self._stored_view(teacher)
        teacher.report["kind"] = kind.value
        return teacher

    def _served(self) -> Teacher:
        return Teacher(TeacherKind.served, backend=self._backend(tokenizer=self._tokenizer()))

    def _stored_view(self, teacher: Teacher) -> None:
        """The cache's top-k store of this backend's view of the training completions: rank 0 builds
        a missing one (other jobs wait on its lock), then every rank reads it."""
        from forge.teachers.cache.teacher_pass import TeacherPass
        from forge.teachers.cache.topk_session import TopKStoreSession

        cache = self.plan.cache
        source = TeacherPass(root=cache.root, backend=teacher.backend, dataset=self.data.train,
                             collator=self.data.collator, tokenizer=self._tokenizer(), batch_size=cache.batch_size)
        teacher.store = TopKStoreSession(source, cache.topk)
        with self.ranks.main_first():
            teacher.signals = teacher.store.open()
        if cache.topk.teacher_text is not None:  # sequence-level KD from the store: train on the teacher's text
            teacher.train_set = teacher.store.train_set

    def _cached(self) -> Teacher:
        from forge.teachers.cache.session import TeacherCacheSession

        session = TeacherCacheSession(cfg=self.cfg, plan=self.plan.cache, data=self.data, tokenizer=self._tokenizer(),
                                      loss=self.plan.loss, num_layers=self.plan.teacher_info.num_layers,
                                      load_teacher=self.load, finetune_into=self.finetune_into,
                                      device=self.ranks.device, ranks=self.ranks)
        session.fingerprint()  # every rank: a shared teacher nobody has sealed yet is fine-tuned jointly
        with self.ranks.main_first():
            signals = session.signals()  # rank 0 builds what is missing; the others then only read
        return Teacher(TeacherKind.cached, signals=signals, session=session)  # its report: run_metadata's teacher_cache

    def _finetuned(self) -> Teacher:
        """The teacher fine-tuned first: this run's own sealed one on resume, else the one shared by
        its recipe (a frozen teacher, `plan.cache.share_teacher`), else fine-tuned into the run."""
        from forge.runtime.layout import RunLayout
        from forge.teachers.strategy import finetuned_teacher_in

        main = self.ranks.is_main
        sealed = self.ranks.share(str(finetuned_teacher_in(self.run_dir) or "") if main else None)
        report: dict[str, Any] = {}
        if sealed:
            log.info("Reusing the teacher this run fine-tuned before: %s", sealed)
            model = self.load(Path(sealed))
        elif self.plan.cache is not None and self.plan.cache.share_teacher:
            model, report = self._shared_finetuned()
        else:
            model = self.finetune_into(RunLayout(self.run_dir).teacher_sft)
            if model is None:
                raise InterruptedError("stopped while fine-tuning the teacher")
        teacher = Teacher(TeacherKind.finetuned, model=model, trainable=bool(self.cfg.teacher_strategy.cotrain))
        teacher.report.update(report)
        return teacher

    def _shared_finetuned(self) -> tuple[nn.Module, dict[str, Any]]:
        """The frozen teacher shared by every run of its recipe (fine-tuned here if nobody has)."""
        from forge.teachers.cache.shared_teacher import SharedFinetunedTeacher, image_size_bounds

        shared = SharedFinetunedTeacher(cfg=self.cfg, data=self.data, tokenizer=self._tokenizer(),
                                        root=self.plan.cache.root, ranks=self.ranks, finetune_into=self.finetune_into,
                                        image_size=image_size_bounds(self.processor))
        path = shared.obtain()
        return (shared.model if shared.model is not None else self.load(path)), shared.report

    def _live(self) -> Teacher:
        with self.ranks.main_first():
            model = self.load()
        return Teacher(TeacherKind.live, model=model, trainable=bool(self.cfg.teacher_strategy.cotrain))

    # ---- helpers --------------------------------------------------------------------------------

    def _tokenizer(self) -> Any:
        from forge.models.recipe import tokenizer_of

        return tokenizer_of(self.processor)

    def _backend(self, **objects: Any) -> Any:
        """The configured backend, built around `model=` (in-process) or `tokenizer=` (a server)."""
        return hydra.utils.instantiate(self.cfg.teacher_backend, _convert_="all", **objects)

    def _check_shared_vocabulary(self) -> None:
        """Student and teacher read the same input_ids, so their vocabularies must be identical."""
        from forge.models.loading import load_tokenizer

        if self._tokenizer().get_vocab() != load_tokenizer(self.cfg.model.teacher).get_vocab():
            raise ConfigError(ConfigProblem(
                "model", "student and teacher tokenizers differ; token-level distillation needs one vocabulary.",
                None, "pick a pair that shares a tokenizer (e.g. model=minilm or model=bert_distilbert)."))
