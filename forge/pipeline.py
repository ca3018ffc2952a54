"""The Forge pipeline, top to bottom: validate → build → pre-eval → train → post-eval → report.

`run(cfg)` needs no Hydra runtime: pass any composed config (tests compose with `hydra.compose`).
It survives preemption: a run directory that already holds a complete checkpoint is continued
from it (`resume=auto`), stop signals save a checkpoint and raise `RunInterrupted`, and a
relaunched finished run returns its metrics without training again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from forge.config.errors import ConfigError, ConfigProblem
from forge.config.validate import RunPlan, validate_and_plan
from forge.eval.loop import evaluate_model, primary_key
from forge.eval.transfer import format_report, transfer_gap
from forge.runtime.checkpoints import clear_staging, latest_complete_checkpoint
from forge.runtime.logging_setup import RunLogging
from forge.runtime.metadata import RunMetadata
from forge.runtime.resume import ResumeDecision, decide_resume, log_decision, verify_mode
from forge.runtime.rundir import (
    STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, claim_run_dir, read_json, resolve_run_dir,
    write_json_atomic, write_resolved_config,
)
from forge.runtime.secrets import redact
from forge.runtime.signals import RunInterrupted, SignalPolicy, StopRequest
from forge.runtime.training_state import TrainingStateWriter, mean_logged_loss
from forge.trainers.args import keep_last_checkpoints, training_arguments
from forge.trainers.base import TrainingRuntime
from forge.trainers.callbacks import GracefulStopCallback, PeakMetricTracker
from forge.teachers.cache.indexing import IndexedCollator, IndexedDataset
from forge.trainers.components import TrainingComponents

log = logging.getLogger("forge")
REPO_ROOT = Path(__file__).resolve().parents[1]
PRE_METRICS = "pre_metrics.json"


def run(cfg: DictConfig | dict) -> dict[str, Any]:
    """Run (or continue) one experiment; returns the contents of metrics.json."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    plan = validate_and_plan(cfg)  # raises ConfigError before anything is written or loaded
    run_dir = resolve_run_dir(cfg)
    done = _finished_metrics(run_dir) if str(cfg.get("resume", "auto")) != "never" else None
    if done is not None:
        print(f"forge: run {run_dir} already finished; nothing to do (metrics.json is unchanged). "
              "Use a new run_dir to train again.", flush=True)
        return done
    decision = decide_resume(str(cfg.get("resume", "auto")), run_dir, verify_mode=verify_mode(cfg))

    run_dir = claim_run_dir(cfg, run_dir)
    clear_staging(run_dir)
    write_resolved_config(run_dir, cfg)
    run_logging = RunLogging(run_dir)
    metadata = RunMetadata(run_dir, seed=cfg.seed, repo_root=REPO_ROOT,
                           resumed_from=str(decision.checkpoint) if decision.checkpoint else None)
    log.info("Run directory: %s", run_dir)
    log_decision(decision)
    tracker = _build_tracker(cfg)
    stop = StopRequest.for_policy(SignalPolicy.from_config(cfg.get("signals"))).install()
    try:
        tracker.start(run_dir, redact(OmegaConf.to_container(cfg, resolve=True)), name=_run_name(cfg, run_dir),
                      group=cfg.get("study_name"))
        metrics = _execute(cfg, plan, run_dir, decision, stop, tracker, metadata)
    except RunInterrupted as exc:
        log.warning("Run interrupted: %s", exc)
        metadata.finish(STATUS_INTERRUPTED, interrupted_by=exc.__str__())
        tracker.finish(STATUS_INTERRUPTED)
        raise
    except KeyboardInterrupt:
        metadata.finish(STATUS_INTERRUPTED, interrupted_by="KeyboardInterrupt")
        tracker.finish(STATUS_INTERRUPTED)
        raise
    except BaseException as exc:
        from forge.trainers.base import NonFiniteLossError

        expected = isinstance(exc, (ConfigError, NonFiniteLossError))  # their message says it all
        log.error("Run failed: %s: %s", type(exc).__name__, exc, exc_info=not expected)
        metadata.finish(STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
        tracker.finish(STATUS_FAILED)
        raise
    else:
        metadata.finish(STATUS_FINISHED, primary_metric=metrics["primary_metric"])
        tracker.finish(STATUS_FINISHED)
        return metrics
    finally:
        stop.restore()
        run_logging.close()


def _finished_metrics(run_dir: Path) -> Optional[dict[str, Any]]:
    meta, metrics = run_dir / "run_metadata.json", run_dir / "metrics.json"
    if meta.is_file() and metrics.is_file() and read_json(meta).get("status") == STATUS_FINISHED:
        return read_json(metrics)
    return None


def _run_name(cfg: DictConfig, run_dir: Path) -> str:
    return f"{cfg.task.name}/{cfg.model.name}/{cfg.mode.name}/{cfg.loss.name}/{run_dir.name}"


def _build_tracker(cfg: DictConfig) -> Any:
    from forge.tracking.base import NullTracker

    node = cfg.get("logger")
    if node is None or node.get("_target_") is None:
        return NullTracker()
    return hydra.utils.instantiate(node, _convert_="all")


def _build_backend(cfg: DictConfig, **objects: Any) -> Any:
    """The configured teacher backend, given the objects it is built around (model= or tokenizer=)."""
    return hydra.utils.instantiate(cfg.teacher_backend, _convert_="all", **objects)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_shared_vocabulary(student_tok: Any, teacher_tok: Any) -> None:
    """Student and teacher read the same input_ids, so their vocabularies must be identical."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(ConfigProblem(
            "model", "student and teacher tokenizers differ; token-level distillation needs one vocabulary.",
            None, "pick a pair that shares a tokenizer (e.g. model=minilm or model=bert_distilbert).",
        ))


def _interrupted(stop: StopRequest, step: int, run_dir: Path) -> RunInterrupted:
    last = latest_complete_checkpoint(run_dir, "size")
    return RunInterrupted(stop.signum or 15, step, str(last) if last else None, dict(stop.previous))


def _cache_session(cfg: DictConfig, plan: RunPlan, data: Any, tokenizer: Any, run_dir: Path, stop: StopRequest,
                   device: torch.device) -> Any:
    """The teacher-cache session of a KD run: how to load and fine-tune the teacher if it must."""
    from forge.models.loading import resize_embeddings_if_needed
    from forge.teachers.cache.session import TeacherCacheSession
    from forge.teachers.strategy import finetune_teacher, load_teacher

    handler = plan.handler

    def load(checkpoint: Optional[Path]) -> torch.nn.Module:
        model = load_teacher(cfg, num_labels=handler.num_labels, kind=handler.model_kind, checkpoint=checkpoint,
                             attn_implementation=plan.attn_implementation)
        resize_embeddings_if_needed(model, tokenizer)
        return model.to(device).eval()

    def finetune(model: torch.nn.Module, out_dir: Path, on_sealing: Any) -> Optional[torch.nn.Module]:
        model.set_attn_implementation("sdpa")  # as without the cache: same recipe, same weights
        trained = finetune_teacher(model, cfg, data, tokenizer, run_dir, callbacks=[GracefulStopCallback(stop)],
                                   out_dir=out_dir, on_sealing=on_sealing)
        if trained is None:
            return None
        trained.set_attn_implementation(plan.attn_implementation)
        return trained.eval()

    return TeacherCacheSession(cfg=cfg, plan=plan.cache, data=data, tokenizer=tokenizer, loss=plan.loss,
                               num_layers=plan.teacher_info.num_layers, load_teacher=load, finetune=finetune,
                               device=device)


def _execute(cfg: DictConfig, plan: RunPlan, run_dir: Path, decision: ResumeDecision, stop: StopRequest,
             tracker: Any, metadata: Any) -> dict[str, Any]:
    from forge.models.loading import load_model, load_tokenizer, resize_embeddings_if_needed
    from forge.models.lora import apply_lora, save_final_model
    from forge.teachers.strategy import finetune_teacher, finetuned_teacher_in, load_teacher, teacher_init_rng
    from forge.tracking.base import flatten
    from forge.tracking.callback import TrackerCallback

    set_seed(cfg.seed)
    handler = plan.handler
    distilling = bool(cfg.mode.requires_teacher)
    kind = handler.model_kind
    device = _device()

    tokenizer = load_tokenizer(cfg.model.student)
    remote_teacher = plan.backend_cls is not None and not plan.backend_cls.needs_local_model
    if distilling and not remote_teacher:
        _check_shared_vocabulary(tokenizer, load_tokenizer(cfg.model.teacher))
    context = cfg.teacher_strategy.get("context") if distilling else None
    data = handler.prepare(tokenizer, teacher_context=context) if context else handler.prepare(tokenizer)
    log.info("Data: %d training examples; eval sets %s", len(data.train),
             {name: len(ds) for name, ds in data.eval_sets.items()})

    student = load_model(cfg.model.student, kind=kind, num_labels=handler.num_labels,
                         attn_implementation=plan.attn_implementation)
    resize_embeddings_if_needed(student, tokenizer)
    if cfg.model.student.lora.enabled:
        student = apply_lora(student, cfg.model.student.lora, kind=kind)

    teacher: Optional[torch.nn.Module] = None
    backend: Any = None
    cache_session: Any = None
    signals: Any = None
    if distilling:
        plan.loss.bind(plan.student_info, plan.teacher_info)
    if distilling and plan.cache is not None and plan.cache.enabled:
        cache_session = _cache_session(cfg, plan, data, tokenizer, run_dir, stop, device)
        try:
            signals = cache_session.signals()
        except InterruptedError:
            raise _interrupted(stop, 0, run_dir) from None
    elif distilling and remote_teacher:
        backend = _build_backend(cfg, tokenizer=tokenizer)
    elif distilling:
        if plan.cache is not None and plan.cache.reason and cfg.mode.name == "kd":
            log.info("Teacher cache not used: %s", plan.cache.reason)
        finetune = bool(cfg.teacher_strategy.finetune_first and not cfg.teacher_strategy.checkpoint)
        sealed = finetuned_teacher_in(run_dir) if finetune else None
        if sealed is not None:
            log.info("Reusing the teacher this run fine-tuned before: %s", sealed)
            finetune = False
        # The teacher's own fine-tuning never needs attention maps: run it on SDPA, then switch.
        with teacher_init_rng(cfg):
            teacher = load_teacher(cfg, num_labels=handler.num_labels, kind=kind, checkpoint=sealed,
                                   attn_implementation="sdpa" if finetune else plan.attn_implementation)
        resize_embeddings_if_needed(teacher, tokenizer)
        if finetune:
            teacher = finetune_teacher(teacher, cfg, data, tokenizer, run_dir, callbacks=[GracefulStopCallback(stop)])
            if teacher is None:
                raise _interrupted(stop, 0, run_dir)
            if plan.attn_implementation != "sdpa":
                teacher.set_attn_implementation(plan.attn_implementation)
        if plan.backend_cls is not None and cfg.mode.name == "gkd":
            teacher.to(device)
            backend = _build_backend(cfg, model=teacher)
    if backend is not None:
        backend.check_tokenizer(tokenizer)
        log.info("Teacher backend: %s", backend.describe())
    if stop.requested:
        raise _interrupted(stop, 0, run_dir)

    def score(model: torch.nn.Module) -> dict[str, float]:
        model.to(device)
        return evaluate_model(model, handler, data.eval_sets, data.evaluation_collator,
                              batch_size=cfg.trainer.per_device_eval_batch_size, device=device)

    key = primary_key(handler, data.eval_sets)
    pre_path = run_dir / PRE_METRICS
    if decision.resuming and pre_path.is_file():
        pre = read_json(pre_path)  # scored by the first attempt, on the untrained student
    else:
        pre = {"student": score(student)}
        if cache_session is not None:
            pre["teacher"] = cache_session.teacher_metrics(score, data.eval_sets)
        elif teacher is not None:
            pre["teacher"] = score(teacher)
        write_json_atomic(pre_path, pre)
    if cache_session is not None:
        cache_session.release()  # training reads the cache: the teacher's weights can go
        metadata.update(teacher_cache=cache_session.report)
    elif distilling and plan.cache is not None:
        metadata.update(teacher_cache={"used": False, "reason": plan.cache.reason})
    log.info("Pre-training metrics: %s", pre)
    tracker.log(flatten({"pre": pre}), step=0)

    components = TrainingComponents(
        student=student, train_dataset=data.train, collator=data.collator, tokenizer=tokenizer,
        teacher=teacher, loss=plan.loss if distilling else None, alpha=float(cfg.alpha),
        teacher_trainable=bool(cfg.teacher_strategy.cotrain) and distilling, teacher_backend=backend,
        teacher_signals=signals,
    )
    if signals is not None:  # batches carry each example's index, to look its signals up
        components.train_dataset = IndexedDataset(data.train)
        components.collator = IndexedCollator(data.collator)
    stop_callback = GracefulStopCallback(stop)
    state_writer = TrainingStateWriter(run_dir, primary_metric=key)
    runtime = TrainingRuntime(
        keep_last=keep_last_checkpoints(cfg.trainer),
        eval_fn=score if int(cfg.trainer.get("eval_steps") or 0) > 0 else None,
        eval_dataset=next(iter(data.eval_sets.values())),
        callbacks=[stop_callback, PeakMetricTracker(key, getattr(handler, "greater_is_better", True)),
                   TrackerCallback(tracker)],
        on_checkpoint=[state_writer.on_checkpoint],
        checkpoint_extra=state_writer.checkpoint_extra,
    )
    trainer_cfg = OmegaConf.to_container(cfg.mode.trainer, resolve=True)
    trainer_cls = hydra.utils.get_class(trainer_cfg.pop("_target_"))
    args = training_arguments(cfg.trainer, output_dir=run_dir, seed=cfg.seed)
    trainer = trainer_cls.from_components(components, args, runtime=runtime, **trainer_cfg)
    state_writer.attach(trainer, resumed_from=decision.checkpoint)
    try:
        train_output = trainer.train(resume_from_checkpoint=str(decision.checkpoint) if decision.checkpoint else None)
    finally:
        if backend is not None:
            backend.close()

    if stop_callback.stopped_at_step is not None and trainer.state.global_step < trainer.state.max_steps:
        state_writer.write(status="interrupted")
        raise _interrupted(stop, trainer.state.global_step, run_dir)
    state_writer.write(status="finished", training_loss=mean_logged_loss(trainer.state.log_history))

    post = {"student": score(student)}
    if "teacher" in pre:
        # A frozen teacher (live or read from the cache) cannot have changed: reuse its pre scores.
        post["teacher"] = score(teacher) if components.teacher_trainable else dict(pre["teacher"])
    gap = transfer_gap(
        key,
        student_pre=pre["student"][key], student_post=post["student"][key],
        teacher_pre=pre.get("teacher", {}).get(key), teacher_post=post.get("teacher", {}).get(key),
    )
    save_final_model(student, tokenizer, run_dir / "final")
    if distilling and any(True for _ in plan.loss.parameters()):
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in plan.loss.state_dict().items()},
                  str(run_dir / "final" / "forge_loss_projections.safetensors"))

    metrics = {
        "primary_metric": key,
        "pre": pre,
        "post": post,
        "transfer_gap": gap.as_dict(),
        "peak": state_writer.peak(),
        "train": {**{k: v for k, v in train_output.metrics.items() if isinstance(v, (int, float))},
                  "global_step": trainer.state.global_step,
                  "train_loss": mean_logged_loss(trainer.state.log_history)},
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    tracker.log(flatten({"post": post}), step=trainer.state.global_step)
    tracker.summary({"pre": pre, "post": post, "transfer_gap": gap.as_dict(), "peak": metrics["peak"]})
    log.info("Results\n%s\n\nrun directory: %s", format_report(pre, post, gap), run_dir)
    return metrics
