"""The Forge pipeline, top to bottom:

    plan → data → student → teacher → pre-eval → train → post-eval → save and report

`run(cfg)` needs no Hydra runtime: pass any composed config (tests compose with `hydra.compose`).
The plan checks everything before anything is written (one `ConfigError`); the session claims the
run directory and records how the run ends; each stage below is one function. A run survives
preemption: a run directory that already holds a complete checkpoint is continued from it
(`resume=auto`), stop signals save a checkpoint and raise `RunInterrupted`, and a relaunched
finished run returns its metrics without training again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from forge.eval.loop import evaluate_model, primary_key
from forge.pipeline_results import report, save_and_report
from forge.plan import build_plan, sharded
from forge.runtime.checkpoints import latest_complete_checkpoint
from forge.runtime.layout import RunLayout
from forge.runtime.ranks import RankContext
from forge.runtime.resume import decide_resume, verify_mode
from forge.runtime.rundir import STATUS_FINISHED, read_json, resolve_run_dir, write_json_atomic
from forge.runtime.seeds import derived_seed, seeded
from forge.runtime.session import RunSession, claim, open_session
from forge.runtime.signals import RunInterrupted
from forge.runtime.training_state import TrainingStateWriter, mean_logged_loss

log = logging.getLogger("forge")
REPO_ROOT = Path(__file__).resolve().parents[1]

Score = Callable[[torch.nn.Module], dict[str, float]]


def run(cfg: DictConfig | dict) -> dict[str, Any]:
    """Run (or continue) one experiment; returns the contents of metrics.json."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    plan = build_plan(cfg)  # raises ConfigError before anything is written or loaded
    ranks = RankContext.from_env()
    ranks.ensure_process_group()
    run_dir = Path(ranks.share(str(resolve_run_dir(cfg)) if ranks.is_main else None))
    resume = str(cfg.get("resume", "auto"))
    done = finished_metrics(RunLayout(run_dir)) if resume != "never" else None
    if done is not None:
        if ranks.is_main:
            print(f"forge: run {run_dir} already finished; nothing to do (metrics.json is unchanged). "
                  "Use a new run_dir to train again.", flush=True)
        return done
    decision = decide_resume(resume, run_dir, verify_mode=verify_mode(cfg))
    layout = claim(cfg, run_dir, ranks)
    name = f"{cfg.task.name}/{cfg.model.name}/{cfg.mode.name}/{cfg.loss.name}/{layout.root.name}"
    with open_session(cfg, plan, layout, ranks, decision, repo_root=REPO_ROOT, run_name=name) as session:
        session.finish(_stages(session))
    assert session.result is not None
    return session.result


def finished_metrics(layout: RunLayout) -> Optional[dict[str, Any]]:
    """metrics.json of a run directory whose run finished, else None."""
    if layout.metadata.is_file() and layout.metrics.is_file() and \
            read_json(layout.metadata).get("status") == STATUS_FINISHED:
        return read_json(layout.metrics)
    return None


@dataclass
class Trained:
    """What training leaves for the stages after it."""

    trainer: Any
    output: Any
    state: TrainingStateWriter


def _stages(s: RunSession) -> dict[str, Any]:
    set_seed(s.cfg.seed)
    processor, data = prepare_data(s)
    student = build_student_stage(s, processor)
    teacher = obtain_teacher(s, data, processor)
    pre = pre_evaluate(s, data, student, teacher, local_scorer(s, data), float_student(s, processor))
    if not s.plan.mode.trains:
        return untrained_result(s, data, processor, student, pre)
    trained = train(s, data, processor, student, teacher, scorer(s, data))
    student = deployed_student(s, student, data, processor)
    post = post_evaluate(s, student, teacher, pre, local_scorer(s, data))
    return save_and_report(s, data, processor, student, teacher, pre, post, trained)  # forge.pipeline_results


def untrained_result(s: RunSession, data: Any, processor: Any, student: torch.nn.Module,
                     pre: dict[str, Any]) -> dict[str, Any]:
    """mode=eval: the pre scores are the result, nothing is saved. mode=ptq: the converted student's
    scores are post, and it is saved in final/."""
    from forge.models.recipe import save_final

    if not s.plan.mode.quantizes_without_training:
        return report(s, data, pre, dict(pre), train={"global_step": 0}, peak=None, step=0)
    student = deployed_student(s, student, data, processor)
    post = post_evaluate(s, student, None, pre, local_scorer(s, data))
    if s.ranks.is_main:
        save_final(student, processor, s.layout.final, quantizer=s.plan.quantizer)
    return report(s, data, pre, post, train={"global_step": 0}, peak=None, step=0)


def deployed_student(s: RunSession, student: torch.nn.Module, data: Any, processor: Any) -> torch.nn.Module:
    """What the post-training scores and final/ are of: the trained student, or for a quantized
    student its converted form (forge.models.recipe.final_form says why), calibrated on the task's
    training inputs (or the quantizer's calibration file) when the quantizer needs it (GPTQ, AWQ)."""
    from forge.models.recipe import final_form, tokenizer_of

    quantizer = s.plan.quantizer
    if quantizer is None:
        return student
    calibration = None
    if quantizer.needs_calibration:
        from forge.models.calibrated_quantization import calibration_ids

        calibration = calibration_ids(data.train, data.collator, quantizer.calibration_samples,
                                      quantizer.calibration_max_length, int(s.cfg.seed),
                                      quantizer.calibration_texts(), tokenizer_of(processor))
    log.info("Converting the student for final/ and its scores (%s)", quantizer.recipe())
    return final_form(student, quantizer, calibration)


# ---- data, student, teacher ---------------------------------------------------------------------

def prepare_data(s: RunSession) -> tuple[Any, Any]:
    """The student's processor and the task's model-ready data (with the teacher's own prompts when
    the teacher_strategy bakes a context in)."""
    from forge.models.loading import load_processor

    handler = s.plan.handler
    with s.ranks.main_first():  # loading the processor converts a packaged model once, on rank 0
        processor = load_processor(s.cfg.model.student, handler.model_kind)
    context = s.cfg.teacher_strategy.get("context") if s.plan.teacher_needs is not None else None
    data = handler.prepare(processor, teacher_context=context)
    log.info("Data: %d training examples; eval sets %s", len(data.train),
             {name: len(ds) for name, ds in data.eval_sets.items()})
    return processor, data


def build_student_stage(s: RunSession, processor: Any) -> torch.nn.Module:
    """The student (its new parameters drawn from the run's seed), and the loss bound to the pair
    (its projections drawn from their own stream)."""
    from forge.models.recipe import build_student

    plan, cfg = s.plan, s.cfg
    student = build_student(cfg.model.student, processor, kind=plan.handler.model_kind,
                            num_labels=plan.handler.num_labels, attn_implementation=plan.attn_implementation,
                            seed=int(cfg.seed), quantizer=plan.quantizer)
    if plan.mode.uses_loss:
        with seeded(derived_seed(cfg.seed, "loss_projections")):
            plan.loss.bind(plan.student_info, plan.teacher_info)
    return student


def obtain_teacher(s: RunSession, data: Any, processor: Any) -> Any:
    """The teacher this run needs (None without one), in the form its mode reads it. A teacher that
    wrote the training set itself (sequence-level KD from the store) replaces `data.train` with it."""
    from forge.teachers.provider import TeacherKind, TeacherProvider

    plan = s.plan
    if plan.teacher_kind is None:
        return None
    provider = TeacherProvider(cfg=s.cfg, plan=plan, data=data, processor=processor, run_dir=s.layout.root,
                               ranks=s.ranks, finetune=_teacher_finetuner(s, data, processor))
    try:
        teacher = provider.obtain()
    except InterruptedError:
        raise interrupted(s, 0) from None
    if plan.cache is not None and plan.cache.reason and teacher.kind != TeacherKind.cached:
        log.info("Teacher cache not used: %s", plan.cache.reason)
    if s.ranks.agree_max(int(s.stop.signum or 0)):  # a signal on any rank stops every rank here
        raise interrupted(s, 0)
    if teacher.train_set is not None:
        data.train = teacher.train_set
        log.info("Training on the teacher's stored completions of the %d training examples", len(data.train))
    return teacher


def _teacher_finetuner(s: RunSession, data: Any, processor: Any) -> Callable[..., Any]:
    from forge.teachers.strategy import teacher_seed
    from forge.trainers.callbacks import GracefulStopCallback
    from forge.trainers.teacher_finetune import finetune_teacher

    def finetune(model: torch.nn.Module, out_dir: Path, on_sealing: Any = None) -> Any:
        return finetune_teacher(model, s.cfg, data, processor, out_dir=out_dir, seed=teacher_seed(s.cfg),
                                callbacks=[GracefulStopCallback(s.stop, s.ranks)], on_sealing=on_sealing)

    return finetune


# ---- evaluation ---------------------------------------------------------------------------------

def local_scorer(s: RunSession, data: Any) -> Score:
    """model -> flat metrics on every eval set, through the task's own eval loop, in this process."""
    handler, device = s.plan.handler, s.ranks.device
    batch_size = s.cfg.trainer.per_device_eval_batch_size

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        model.to(device)
        return evaluate_model(model, handler, data.eval_sets, data.evaluation_collator, batch_size=batch_size,
                              device=device)

    return evaluate


def scorer(s: RunSession, data: Any) -> Score:
    """The scorer every rank calls during training (periodic evaluation): the same numbers as one
    process. With DDP rank 0 evaluates and tells the others (the model is whole on every rank); with
    FSDP the model is sharded, so every rank runs the same evaluation."""
    evaluate = local_scorer(s, data)
    if not s.ranks.distributed or sharded(s.cfg):
        return evaluate
    return lambda model: s.ranks.share(evaluate(model) if s.ranks.is_main else None)


def _on_one_rank(s: RunSession, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`compute()` on rank 0 and shared (DDP), or on every rank (FSDP, whose evaluation is collective)."""
    if not s.ranks.distributed or sharded(s.cfg):
        return compute()
    return s.ranks.share(compute() if s.ranks.is_main else None)


def float_student(s: RunSession, processor: Any) -> Optional[Callable[[], torch.nn.Module]]:
    """For a run that trains through fake quantization (QAT), how to build its student in float, to
    score the model the int4 one replaces (forge.eval.quantized_comparison); None otherwise."""
    from forge.models.recipe import build_student

    quantizer, plan, cfg = s.plan.quantizer, s.plan, s.cfg
    if quantizer is None or not quantizer.quantizes_in_training or not plan.mode.trains:
        return None
    return lambda: build_student(cfg.model.student, processor, kind=plan.handler.model_kind,
                                 num_labels=plan.handler.num_labels, attn_implementation=plan.attn_implementation,
                                 seed=int(cfg.seed)).eval()


def pre_evaluate(s: RunSession, data: Any, student: torch.nn.Module, teacher: Any, score: Score,
                 float_student: Optional[Callable[[], torch.nn.Module]] = None) -> dict[str, Any]:
    """Teacher and student before training (a resumed run reads what its first attempt scored); a
    QAT student's float form too (`student_float`), when `float_student` builds it."""
    from forge.eval.quantized_comparison import FLOAT_STUDENT
    from forge.tracking.base import flatten

    def scores() -> dict[str, Any]:
        pre = {"student": score(student)}
        if float_student is not None:
            pre[FLOAT_STUDENT] = score(float_student())
        teacher_scores = teacher.scores(score, data.eval_sets) if teacher is not None else None
        if teacher_scores is not None:
            pre["teacher"] = teacher_scores
        return pre

    if s.decision.resuming and s.layout.pre_metrics.is_file():
        pre = read_json(s.layout.pre_metrics)
    else:
        pre = _on_one_rank(s, scores)
        if s.ranks.is_main:
            write_json_atomic(s.layout.pre_metrics, pre)
    if teacher is not None:
        teacher.after_pre_eval()
        s.record(teacher=teacher.report)
    if s.plan.teacher_needs is not None and s.plan.cache is not None:
        report = teacher.cache_report() if teacher is not None else None
        s.record(teacher_cache=report if report is not None else {"used": False, "reason": s.plan.cache.reason})
    log.info("Pre-training metrics: %s", pre)
    s.tracker.log(flatten({"pre": pre}), step=0)
    return pre


def post_evaluate(s: RunSession, student: torch.nn.Module, teacher: Any, pre: dict[str, Any],
                  score: Score) -> dict[str, Any]:
    """The student after training; a frozen teacher cannot have changed, so its pre scores stand."""
    def scores() -> dict[str, Any]:
        post = {"student": score(student)}
        if "teacher" in pre:
            trained = teacher is not None and teacher.trainable
            post["teacher"] = score(teacher.model) if trained else dict(pre["teacher"])
        return post

    return _on_one_rank(s, scores)


# ---- training -----------------------------------------------------------------------------------

def train(s: RunSession, data: Any, processor: Any, student: torch.nn.Module, teacher: Any,
          score: Score) -> Trained:
    """The mode's trainer on the run's components, resumed from the decided checkpoint."""
    from forge.trainers.args import distributed_arguments, training_arguments

    plan, cfg = s.plan, s.cfg
    stop_callback, state, runtime = _runtime(s, data, score)
    args = training_arguments(cfg.trainer, output_dir=s.layout.root, seed=cfg.seed, args_class=plan.mode.args_class,
                              **distributed_arguments(cfg.get("distributed")), **plan.mode.trainer_arguments())
    trainer = plan.mode.build_trainer(_components(s, data, processor, student, teacher), args, runtime)
    state.attach(trainer, resumed_from=s.decision.checkpoint)
    checkpoint = str(s.decision.checkpoint) if s.decision.checkpoint else None
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        if teacher is not None:
            teacher.close()
    if stop_callback.stopped_at_step is not None and trainer.state.global_step < trainer.state.max_steps:
        state.write(status="interrupted")
        raise interrupted(s, trainer.state.global_step, stop_callback.stopped_by)
    state.write(status="finished", training_loss=mean_logged_loss(trainer.state.log_history))
    return Trained(trainer, output, state)


def _components(s: RunSession, data: Any, processor: Any, student: torch.nn.Module, teacher: Any) -> Any:
    from forge.data.indexing import IndexedCollator, IndexedDataset
    from forge.trainers.components import TrainingComponents

    plan = s.plan
    components = TrainingComponents(
        student=student, train_dataset=data.train, collator=data.collator, tokenizer=processor,
        teacher=getattr(teacher, "model", None), loss=plan.loss if plan.mode.uses_loss else None,
        alpha=float(s.cfg.alpha), teacher_trainable=bool(teacher is not None and teacher.trainable),
        teacher_backend=getattr(teacher, "backend", None), teacher_signals=getattr(teacher, "signals", None),
    )
    if components.teacher_signals is not None:  # batches carry each example's index, to look its signals up
        components.train_dataset = IndexedDataset(data.train)
        components.collator = IndexedCollator(data.collator)
    return components


def _runtime(s: RunSession, data: Any, score: Score) -> tuple[Any, TrainingStateWriter, Any]:
    """(graceful-stop callback, training-state writer, the trainer's runtime services)."""
    from forge.tracking.callback import TrackerCallback
    from forge.trainers.args import keep_last_checkpoints
    from forge.trainers.base import TrainingRuntime
    from forge.trainers.callbacks import GracefulStopCallback, PeakMetricTracker

    handler = s.plan.handler
    key = primary_key(handler, data.eval_sets)
    stop_callback = GracefulStopCallback(s.stop, s.ranks)
    state = TrainingStateWriter(s.layout.root, primary_metric=key, enabled=s.ranks.is_main)
    runtime = TrainingRuntime(
        keep_last=keep_last_checkpoints(s.cfg.trainer),
        eval_fn=score if int(s.cfg.trainer.get("eval_steps") or 0) > 0 else None,
        eval_dataset=next(iter(data.eval_sets.values())),
        callbacks=[stop_callback, PeakMetricTracker(key, handler.greater_is_better), TrackerCallback(s.tracker)],
        on_checkpoint=[state.on_checkpoint],
        checkpoint_extra=state.checkpoint_extra,
    )
    return stop_callback, state, runtime


def interrupted(s: RunSession, step: int, signum: Optional[int] = None) -> RunInterrupted:
    """The exception that ends a stopped run: the signal any rank received (all agree on it)."""
    signum = signum or s.ranks.agree_max(int(s.stop.signum or 0)) or 15
    last = latest_complete_checkpoint(s.layout.root, "size")
    return RunInterrupted(signum, step, str(last) if last else None, dict(s.stop.previous))
