"""The run plan: every weightless piece of a run built and checked before anything is written.

`build_plan(cfg)` instantiates the mode, the task handler, the loss and the tracker, reads the
student's and teacher's configs (no weights), asks the mode for its problems and its teacher needs,
checks the teacher backend's declared capabilities and decides the teacher's kind and the cache.
Everything wrong is reported at once in one `ConfigError`: what, the key, the value, the fix. It
sits above the pieces it builds (data, losses, models, modes, teachers); the config layer below it
only holds schemas and errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import hydra.utils
from omegaconf import DictConfig

from forge.config.errors import ProblemCollector
from forge.data.base import TaskDataHandler
from forge.losses.base import DistillationLoss, NoDistillation
from forge.models.info import ModelInfo
from forge.modes.base import Mode, PlanParts, TeacherNeeds
from forge.teachers.cache.policy import CachePlan, plan_cache
from forge.teachers.provider import TeacherKind, teacher_kind


@dataclass
class RunPlan:
    """The validated, built-but-weightless pieces of a run.

    teacher_needs / teacher_kind: what the mode reads from its teacher and how that teacher is
    obtained (None when the mode has none); backend_cls: the teacher backend's class (built once
    the teacher is there); cache: whether the teacher is read from the teacher-signal cache, and why not.
    """

    mode: Mode
    handler: TaskDataHandler
    loss: DistillationLoss
    student_info: ModelInfo
    teacher_info: Optional[ModelInfo]
    teacher_head_trained: bool
    attn_implementation: str
    tracker: Any = None
    backend_cls: Optional[type] = None
    cache: Optional[CachePlan] = None
    teacher_needs: Optional[TeacherNeeds] = None
    teacher_kind: Optional[TeacherKind] = None
    quantizer: Any = None  # model.student.quantization built (a forge.models.recipe.StudentQuantizer)


def teacher_head_will_be_trained(cfg: DictConfig, kind: str = "classification") -> bool:
    """A classifier's head starts random unless the strategy trains it; an LM head is pretrained."""
    from forge.models.kinds import model_kind

    ts = cfg.teacher_strategy
    return bool(ts.finetune_first or ts.checkpoint or ts.cotrain) or not model_kind(kind).label_head


def build_plan(cfg: DictConfig) -> RunPlan:
    """Check the whole config; return the pieces the pipeline needs or raise ConfigError."""
    from forge.config.arm_names import missing_arm_keys
    from forge.config.launcher import arm_key_problem
    from forge.config.ranges import config_range_problems, config_unknown_key_problems

    problems = ProblemCollector()
    problems.extend(config_unknown_key_problems(cfg))
    problems.raise_if_any()  # a key no schema has (`+logger.api_key=...`): nothing can be built from it
    problems.extend(config_range_problems(cfg))
    _check_signals(cfg, problems)
    _check_sharding(cfg, problems)
    problems.extend([arm_key_problem(key) for key in missing_arm_keys(cfg)])
    mode = _built(problems, "mode", lambda: _mode(cfg))
    handler = _built(problems, "task", lambda: hydra.utils.instantiate(cfg.task, _convert_="all"))
    if handler is not None:
        problems.extend(handler.validate())
    loss = _built(problems, "loss", lambda: _loss(cfg)) or NoDistillation()
    tracker = _built(problems, "logger", lambda: _tracker(cfg))
    kind = getattr(handler, "model_kind", "classification")
    head_trained = teacher_head_will_be_trained(cfg, kind)
    needs_teacher = bool(mode is not None and mode.needs_teacher)
    student_info, teacher_info = _model_infos(cfg, handler, kind, head_trained, needs_teacher, problems)
    quantizer = _student_quantizer(cfg, handler, kind, problems) if student_info is not None else None
    backend_cls, caps = _teacher_backend(cfg, problems) if needs_teacher else (None, None)
    if caps is not None:  # what the backend gives for *this task's* prompts (pages: maybe generation only)
        caps = caps.for_prompts(images=bool(getattr(handler, "reads_images", False)))
    parts = PlanParts(cfg=cfg, handler=handler, loss=loss, kind=kind, backend_cls=backend_cls,
                      capabilities=caps, teacher_head_trained=head_trained)
    needs: Optional[TeacherNeeds] = None
    if mode is not None:
        problems.extend(mode.check(parts))
        needs = mode.teacher_needs(parts) if needs_teacher else None
        _check_teacher_use(cfg, mode, parts, needs, student_info, teacher_info, problems)
        _check_images(parts, needs, problems)
    cache, cache_problems = plan_cache(cfg, handler=handler, needs=needs,
                                       mode_reasons=mode.cache_refusals(parts) if needs is not None else [],
                                       stored=mode.stored_view(parts) if needs is not None else None)
    problems.extend(cache_problems)
    problems.raise_if_any()
    assert mode is not None and handler is not None and student_info is not None
    return RunPlan(
        mode=mode, handler=handler, loss=loss, student_info=student_info, teacher_info=teacher_info,
        teacher_head_trained=head_trained, tracker=tracker, backend_cls=backend_cls, cache=cache,
        attn_implementation="eager" if mode.uses_loss and loss.needs.attentions else "sdpa",
        teacher_needs=needs, quantizer=quantizer,
        teacher_kind=teacher_kind(cfg, backend_cls=backend_cls,
                                 cache_enabled=cache.enabled and cache.topk is None) if needs else None,
    )


def _built(problems: ProblemCollector, key: str, build: Callable[[], Any]) -> Any:
    """`build()`, or None with a problem under `key` when it raises."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - reported as a config problem
        problems.add(key, f"could not be built: {exc}")
        return None


def _mode(cfg: DictConfig) -> Mode:
    # Not recursive: a mode builds what its node holds (mode=rl its rewards) and reports what fails.
    mode = hydra.utils.instantiate(cfg.mode, _convert_="all", _recursive_=False)
    if not isinstance(mode, Mode):
        raise TypeError(f"mode._target_ built {type(mode).__name__}, not a forge.modes.Mode")
    return mode


def _loss(cfg: DictConfig) -> DistillationLoss:
    from forge.losses import build_loss

    return build_loss(cfg.loss)


def _tracker(cfg: DictConfig) -> Any:
    from forge.tracking.base import NullTracker

    node = cfg.get("logger")
    if node is None or node.get("_target_") is None:
        return NullTracker()
    return hydra.utils.instantiate(node, _convert_="all")


def _model_infos(cfg: DictConfig, handler: Any, kind: str, head_trained: bool, needs_teacher: bool,
                 problems: ProblemCollector) -> tuple[Optional[ModelInfo], Optional[ModelInfo]]:
    """Student's and (when the mode needs one) teacher's architecture facts, from configs only."""
    from forge.models.loading import KindMismatch, read_model_info, validate_model_spec

    num_labels = getattr(handler, "num_labels", 2) if handler is not None else 2
    infos: list[Optional[ModelInfo]] = []
    teacher_spec = cfg.model.get("teacher")
    if needs_teacher and teacher_spec is None:
        problems.add("model.teacher", f"mode={cfg.mode.name} distils from a teacher, but the model group "
                     f"'{cfg.model.name}' defines none.", None,
                     "choose a model pair with a teacher (e.g. model=minilm) or use mode=sft.")
    for key, spec, trained in (("model.student", cfg.model.student, False),
                               ("model.teacher", teacher_spec if needs_teacher else None, head_trained)):
        info = None
        spec_problems = validate_model_spec(spec, key) if spec is not None else None
        if spec_problems:
            problems.extend(spec_problems)
        elif spec is not None:
            try:
                info = read_model_info(spec, kind=kind, num_labels=num_labels, head_trained=trained)
            except KindMismatch as exc:
                problems.add(key, f"{exc} (task={cfg.task.name})", spec.name_or_path, exc.fix)
            except Exception as exc:  # noqa: BLE001
                problems.add(key, f"cannot read the model's config: {exc}", spec.name_or_path)
        infos.append(info)
    return infos[0], infos[1]


def _student_quantizer(cfg: DictConfig, handler: Any, kind: str, problems: ProblemCollector) -> Any:
    """model.student.quantization built, and checked against the student's layers (built on the meta
    device: no weights load) so a recipe that cannot apply fails here, not after the model loads."""
    from forge.models.recipe import quantizer_of
    from forge.models.skeleton import model_skeleton

    key = "model.student.quantization"
    node = cfg.model.student.get("quantization")
    if node is None:
        return None
    quantizer = _built(problems, key, lambda: quantizer_of(cfg.model.student))
    if quantizer is None:
        return None
    if sharded(cfg):
        problems.add(key, "cannot be combined with distributed=fsdp (the int4 model is converted from "
                     "whole weights).", node.get("name"), "use distributed=ddp")
    try:
        skeleton = model_skeleton(cfg.model.student, kind=kind, num_labels=getattr(handler, "num_labels", None))
    except Exception as exc:  # noqa: BLE001 - reported as a config problem
        problems.add(key, f"cannot build the student's layers to check them: {exc}", node.get("name"))
        return quantizer
    problems.extend(quantizer.problems(skeleton, key))
    return quantizer


def _teacher_backend(cfg: DictConfig, problems: ProblemCollector) -> tuple[Optional[type], Any]:
    """The configured backend's class and its declared capabilities (nothing is built or contacted)."""
    from forge.teachers.backends.base import TeacherBackend

    node = cfg.get("teacher_backend")
    if node is None or node.get("_target_") is None:
        problems.add("teacher_backend", f"mode={cfg.mode.name} needs a teacher backend.", None,
                     "use teacher_backend=hf (in-process), vllm or openai")
        return None, None
    try:
        cls = hydra.utils.get_class(node._target_)
    except Exception as exc:  # noqa: BLE001
        problems.add("teacher_backend._target_", f"cannot be imported: {exc}", node._target_)
        return None, None
    if not (isinstance(cls, type) and issubclass(cls, TeacherBackend)):
        problems.add("teacher_backend._target_", "is not a forge TeacherBackend.", node._target_)
        return None, None
    return cls, cls.declared_capabilities(node)


def _check_images(parts: PlanParts, needs: Optional[TeacherNeeds], problems: ProblemCollector) -> None:
    """A teacher read through a backend must take the page images a task's prompts hold."""
    if needs is None or needs.via != "backend" or not getattr(parts.handler, "reads_images", False):
        return
    if parts.capabilities is not None and not parts.capabilities.images:
        problems.add("teacher_backend", f"task={parts.cfg.task.name}'s prompts hold page images, which "
                     f"teacher_backend={parts.backend_name} cannot take (it gives: {parts.capabilities.describe()}).",
                     parts.backend_name, "use teacher_backend=hf (the model group's teacher, in-process), or "
                     "teacher_backend=vlm_server (a chat server that reads pages; sequence-level KD)")


def _check_teacher_use(cfg: DictConfig, mode: Mode, parts: PlanParts, needs: Optional[TeacherNeeds],
                       student_info: Optional[ModelInfo], teacher_info: Optional[ModelInfo],
                       problems: ProblemCollector) -> None:
    """Rules that hold for every mode: a trained head for a distribution, context baking where it
    is implemented, remote teachers never trained, the loss against the model pair."""
    ts = cfg.teacher_strategy
    if ts.get("context") and not (mode.accepts_teacher_context and needs is not None):
        problems.add("teacher_strategy.context", f"context baking trains on the teacher's completions scored "
                     f"with and without the context, which mode={mode.name} does not do.", ts.name,
                     "use mode=gkd (mode.trainer.lmbda=0 and beta=0 is supervised KD with forward KL)")
    elif ts.get("context") and not getattr(parts.handler, "supports_teacher_context", False):
        problems.add("teacher_strategy.context", f"task={cfg.task.name} cannot give the teacher a prompt of its "
                     "own.", ts.name, "use a prompt→completion task (e.g. task=europarl_en_fr)")
    view = getattr(parts.handler, "teacher_view", None)
    if view and not (mode.accepts_teacher_context and mode.reads_teacher_prompts and needs is not None):
        problems.add("task.teacher_max_pixels", f"gives the teacher its own view of each page ({view}), which "
                     f"mode={mode.name} does not read.", view, "use mode=gkd, or set task.teacher_max_pixels=null")
    if ts.checkpoint and not Path(ts.checkpoint).is_dir():
        problems.add("teacher_strategy.checkpoint", "is not a directory holding a fine-tuned teacher.",
                     ts.checkpoint, "point it at a saved model dir (e.g. <run_dir>/teacher_sft) or set it to null.")
    if needs is None:
        return
    if needs.output_distribution and not parts.teacher_head_trained:
        problems.add("teacher_strategy", f"loss={parts.loss_name} distils the teacher's output distribution, but "
                     f"with teacher_strategy={ts.name} the teacher's task head is never trained (it is randomly "
                     "initialised), so the student would learn noise.", ts.name,
                     "use teacher_strategy=frozen_sft (fine-tune the teacher first), cotrain_base or cotrain_sft, "
                     "or a feature/attention loss (e.g. loss=combined_fa).")
    backend_cls = parts.backend_cls
    if backend_cls is not None and not backend_cls.needs_local_model and (ts.finetune_first or ts.cotrain
                                                                          or ts.checkpoint):
        problems.add("teacher_strategy", f"teacher_strategy={ts.name} trains or loads teacher weights, but "
                     f"teacher_backend={parts.backend_name} serves a remote teacher Forge cannot change.", ts.name,
                     "use teacher_strategy=frozen_base or context_baking (or teacher_backend=hf)")
    if mode.uses_loss and student_info is not None and teacher_info is not None:
        problems.extend(parts.loss.validate(student_info, teacher_info))


def sharded(cfg: DictConfig) -> bool:
    """The student's parameters are sharded across ranks (FSDP): every rank must then take part in
    each forward pass, evaluation included."""
    node = cfg.get("distributed")
    return node is not None and str(getattr(node.get("strategy"), "value", node.get("strategy"))) == "fsdp"


def _check_sharding(cfg: DictConfig, problems: ProblemCollector) -> None:
    import torch

    if not sharded(cfg):
        return
    if not torch.cuda.is_available():
        problems.add("distributed", "FSDP shards the student across GPUs; accelerate does not shard on CPUs and "
                     "would silently run DDP instead.", "fsdp", "use distributed=ddp (the default) on CPUs")
    if cfg.model.student.lora.enabled:
        problems.add("distributed", "FSDP with a LoRA student is not supported yet (the adapters would have to be "
                     "merged from sharded weights).", "fsdp", "use distributed=ddp, or model.student.lora.enabled=false")


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
