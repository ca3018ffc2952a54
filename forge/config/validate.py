"""Cross-group checks that schemas cannot express, run before any weights load.

Everything found is reported at once in one `ConfigError`: what is wrong, the key, the value, the
valid choices or the fix. Building the loss object and reading model configs is cheap (no weights),
so loss/model compatibility (layer maps, hidden sizes, head counts) is checked here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra.utils
from omegaconf import DictConfig

from forge.config.errors import ProblemCollector
from forge.data.base import TaskDataHandler
from forge.losses.base import DistillationLoss, NoDistillation
from forge.models.info import ModelInfo


@dataclass
class RunPlan:
    """The validated, built-but-weightless pieces of a run."""

    handler: TaskDataHandler
    loss: DistillationLoss
    student_info: ModelInfo
    teacher_info: Optional[ModelInfo]
    teacher_head_trained: bool
    attn_implementation: str
    #: the teacher backend's class (built by the pipeline once the teacher is loaded), or None
    backend_cls: Optional[type] = None
    #: whether the teacher is read from the teacher-signal cache, and why not
    cache: Any = None


def build_handler(task_cfg: DictConfig) -> TaskDataHandler:
    return hydra.utils.instantiate(task_cfg, _convert_="all")


def teacher_head_will_be_trained(cfg: DictConfig, kind: str = "classification") -> bool:
    """A classifier's head starts random unless the strategy trains it; an LM head is pretrained."""
    ts = cfg.teacher_strategy
    return bool(ts.finetune_first or ts.checkpoint or ts.cotrain) or kind == "causal_lm"


def validate_and_plan(cfg: DictConfig) -> RunPlan:
    """Check the whole config; return the pieces the pipeline needs or raise ConfigError."""
    from forge.losses import build_loss
    from forge.models.loading import read_model_info, validate_model_spec

    problems = ProblemCollector()

    alpha = cfg.alpha
    if not 0.0 <= float(alpha) <= 1.0:
        problems.add("alpha", "must lie in [0, 1] (loss = CE + alpha · distillation).", alpha,
                     "pass e.g. alpha=0.5; alpha=0 means no distillation.")
    if cfg.mode.name == "sft" and cfg.loss.name != "ce":
        problems.add("loss", "mode=sft trains on cross-entropy only, so this distillation loss would be ignored.",
                     cfg.loss.name, "use mode=kd to distil, or loss=ce for fine-tuning.")
    if cfg.mode.name == "sft" and float(alpha) != 0.0:
        problems.add("alpha", "mode=sft means alpha 0 (cross-entropy only).", alpha,
                     "drop the alpha override, or use mode=kd.")

    teacher_spec = cfg.model.get("teacher")
    if cfg.mode.requires_teacher and teacher_spec is None:
        problems.add("model.teacher", f"mode={cfg.mode.name} distils from a teacher, but the model group "
                     f"'{cfg.model.name}' defines none.", None,
                     "choose a model pair with a teacher (e.g. model=minilm) or use mode=sft.")

    _check_signals(cfg, problems)

    ts = cfg.teacher_strategy
    if ts.checkpoint and not Path(ts.checkpoint).is_dir():
        problems.add("teacher_strategy.checkpoint", "is not a directory holding a fine-tuned teacher.",
                     ts.checkpoint, "point it at a saved model dir (e.g. <run_dir>/teacher_sft) or set it to null.")

    handler: Any = None
    try:
        handler = build_handler(cfg.task)
    except Exception as exc:  # noqa: BLE001 - reported as a config problem
        problems.add("task", f"could not build the data handler: {exc}", cfg.task.get("_target_"))
    else:
        problems.extend(handler.validate())

    loss: DistillationLoss = NoDistillation()
    try:
        loss = build_loss(cfg.loss)
    except Exception as exc:  # noqa: BLE001
        problems.add("loss", f"could not build the loss: {exc}", cfg.loss.get("name"))

    kind = getattr(handler, "model_kind", "classification")
    num_labels = getattr(handler, "num_labels", 2) if handler is not None else 2
    student_info: Optional[ModelInfo] = None
    teacher_info: Optional[ModelInfo] = None
    spec_problems = validate_model_spec(cfg.model.student, "model.student")
    problems.extend(spec_problems)
    if not spec_problems:
        try:
            student_info = read_model_info(cfg.model.student, kind=kind, num_labels=num_labels, head_trained=False)
        except Exception as exc:  # noqa: BLE001
            problems.add("model.student", f"cannot read the model's config: {exc}", cfg.model.student.name_or_path)
    head_trained = teacher_head_will_be_trained(cfg, kind)
    if teacher_spec is not None and cfg.mode.requires_teacher:
        spec_problems = validate_model_spec(teacher_spec, "model.teacher")
        problems.extend(spec_problems)
        if not spec_problems:
            try:
                teacher_info = read_model_info(teacher_spec, kind=kind, num_labels=num_labels, head_trained=head_trained)
            except Exception as exc:  # noqa: BLE001
                problems.add("model.teacher", f"cannot read the model's config: {exc}", teacher_spec.name_or_path)

    if cfg.mode.requires_teacher and loss.needs.logits and not head_trained:
        problems.add(
            "teacher_strategy",
            f"loss={cfg.loss.name} distils the teacher's output distribution, but with "
            f"teacher_strategy={ts.name} the teacher's task head is never trained (it is randomly "
            "initialised), so the student would learn noise.",
            ts.name,
            "use teacher_strategy=frozen_sft (fine-tune the teacher first), cotrain_base or cotrain_sft, "
            "or a feature/attention loss (e.g. loss=combined_fa).",
        )
    if student_info is not None and teacher_info is not None and cfg.mode.requires_teacher:
        problems.extend(loss.validate(student_info, teacher_info))
    backend_cls = _check_teacher_backend(cfg, loss, kind, problems) if cfg.mode.requires_teacher else None
    _check_gkd(cfg, loss, kind, problems)
    from forge.teachers.cache.policy import plan_cache

    cache_plan, cache_problems = plan_cache(cfg, loss, handler)
    problems.extend(cache_problems)

    problems.raise_if_any()
    assert handler is not None and student_info is not None
    return RunPlan(
        handler=handler,
        loss=loss,
        student_info=student_info,
        teacher_info=teacher_info,
        teacher_head_trained=head_trained,
        attn_implementation="eager" if loss.needs.attentions else "sdpa",
        backend_cls=backend_cls,
        cache=cache_plan,
    )


def _check_teacher_backend(cfg: DictConfig, loss: DistillationLoss, kind: str,
                           problems: ProblemCollector) -> Optional[type]:
    """The backend must exist and give what the mode and loss read; refused here, not mid-run."""
    from forge.teachers.backends.base import TeacherBackend

    node = cfg.get("teacher_backend")
    if node is None or node.get("_target_") is None:
        problems.add("teacher_backend", f"mode={cfg.mode.name} needs a teacher backend.", None,
                     "use teacher_backend=hf (in-process), vllm or openai")
        return None
    name = node.get("name", node.get("_target_"))
    try:
        cls = hydra.utils.get_class(node._target_)
    except Exception as exc:  # noqa: BLE001
        problems.add("teacher_backend._target_", f"cannot be imported: {exc}", node._target_)
        return None
    if not (isinstance(cls, type) and issubclass(cls, TeacherBackend)):
        problems.add("teacher_backend._target_", "is not a forge TeacherBackend.", node._target_)
        return None
    caps = cls.declared_capabilities(node)
    remote = not cls.needs_local_model
    if cfg.mode.name == "kd":
        needs = loss.needs
        missing = caps.missing_for(logits=needs.logits, hidden_states=needs.hidden_states,
                                   attentions=needs.attentions)
        if missing:
            problems.add("teacher_backend", f"loss={cfg.loss.name} reads the teacher's {', '.join(missing)}, "
                         f"which teacher_backend={name} cannot give (it gives: {_gives(caps)}).", name,
                         "use teacher_backend=hf, or mode=gkd (its loss reads only a top-k view)")
    elif cfg.mode.name == "gkd":
        settings = cfg.mode.trainer
        if settings.get("top_k") is None and not caps.dense_logits:
            problems.add("mode.trainer.top_k", f"is null (dense teacher logits), which teacher_backend={name} "
                         f"cannot give (it gives: {_gives(caps)}).", None,
                         "set mode.trainer.top_k=20 (the server's top-k log-probabilities)")
        if settings.get("top_k") is not None and caps.max_k is not None and int(settings.top_k) > caps.max_k:
            problems.add("mode.trainer.top_k", f"exceeds what teacher_backend={name} returns ({caps.max_k}).",
                         settings.top_k, f"use mode.trainer.top_k<={caps.max_k}")
        if settings.get("seq_kd") and not caps.generate:
            problems.add("mode.trainer.seq_kd", f"needs the teacher to generate; teacher_backend={name} cannot.",
                         True, "set mode.trainer.seq_kd=false or use teacher_backend=hf")
    ts = cfg.teacher_strategy
    if remote and (ts.finetune_first or ts.cotrain or ts.checkpoint):
        problems.add("teacher_strategy", f"teacher_strategy={ts.name} trains or loads teacher weights, but "
                     f"teacher_backend={name} serves a remote teacher Forge cannot change.", ts.name,
                     "use teacher_strategy=frozen_base or context_baking (or teacher_backend=hf)")
    return cls


def _gives(caps: Any) -> str:
    given = [name for name, have in (("dense logits", caps.dense_logits), ("top-k log-probabilities", caps.topk_logprobs),
                                     ("hidden states", caps.hidden_states), ("attention maps", caps.attentions),
                                     ("generation", caps.generate)) if have]
    return ", ".join(given) or "nothing"


def _check_gkd(cfg: DictConfig, loss: DistillationLoss, kind: str, problems: ProblemCollector) -> None:
    """mode=gkd's own rules, and context baking (which only GKD implements)."""
    ts = cfg.teacher_strategy
    gkd = cfg.mode.name == "gkd"
    if ts.get("context") and not gkd:
        problems.add("teacher_strategy.context", f"context baking trains on the teacher's completions scored "
                     f"with and without the context, which mode={cfg.mode.name} does not do.", ts.name,
                     "use mode=gkd (mode.trainer.lmbda=0 and beta=0 is supervised KD with forward KL)")
    if not gkd:
        return
    if kind != "causal_lm":
        problems.add("mode", "mode=gkd trains on generated completions, so it needs a decoder (causal LM) task; "
                     f"task={cfg.task.name} is {kind}.", cfg.mode.name, "use task=europarl_en_fr, or mode=kd")
    if not isinstance(loss, NoDistillation):
        problems.add("loss", "mode=gkd has its own loss (generalized JSD, mode.trainer.beta); a loss group "
                     "option would be ignored.", cfg.loss.name, "drop the loss override (loss=ce)")
    if float(cfg.alpha) != 0.0:
        problems.add("alpha", "mode=gkd does not use alpha: its loss is JSD + mode.trainer.sft_weight * CE.",
                     cfg.alpha, "drop the alpha override; weigh CE with mode.trainer.sft_weight")
    if ts.cotrain:
        problems.add("teacher_strategy", "mode=gkd distils from a frozen teacher.", ts.name,
                     "use teacher_strategy=frozen_base, frozen_sft or context_baking")
    from forge.trainers.gkd import GKDSettings

    settings = {k: v for k, v in cfg.mode.trainer.items() if k != "_target_"}
    try:
        GKDSettings(**settings)
    except TypeError as exc:
        problems.add("mode.trainer", f"unknown GKD setting: {exc}", sorted(settings),
                     "valid: lmbda, beta, seq_kd, temperature, max_new_tokens, top_k, sft_weight")
    except ValueError as exc:
        problems.add("mode.trainer", str(exc), None)


def _check_signals(cfg: DictConfig, problems: ProblemCollector) -> None:
    from forge.runtime.signals import parse_signal

    node = cfg.get("signals")
    for name in (node.get("catch") or []) if node is not None else []:
        try:
            sig = parse_signal(name)
        except ValueError as exc:
            problems.add("signals.catch", str(exc), name, "e.g. signals.catch=[SIGUSR1,SIGUSR2,SIGTERM]")
            continue
        if sig.name in ("SIGKILL", "SIGSTOP"):
            problems.add("signals.catch", "cannot be caught by any process.", name,
                         "catch SIGUSR1, SIGUSR2 or SIGTERM instead")
