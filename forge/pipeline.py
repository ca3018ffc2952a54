"""The Forge pipeline, top to bottom: validate → build → pre-eval → train → post-eval → report.

`run(cfg)` needs no Hydra runtime: pass any composed config (tests compose with `hydra.compose`).
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
from forge.runtime.logging_setup import RunLogging
from forge.runtime.metadata import RunMetadata
from forge.runtime.rundir import (
    STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, resolve_run_dir, write_json_atomic,
    write_resolved_config,
)
from forge.trainers.args import training_arguments
from forge.trainers.components import TrainingComponents

log = logging.getLogger("forge")
REPO_ROOT = Path(__file__).resolve().parents[1]


def run(cfg: DictConfig | dict) -> dict[str, Any]:
    """Run one experiment; returns the contents of metrics.json."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    plan = validate_and_plan(cfg)  # raises ConfigError before anything is written or loaded

    run_dir = resolve_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_resolved_config(run_dir, cfg)
    run_logging = RunLogging(run_dir)
    metadata = RunMetadata(run_dir, seed=cfg.seed, repo_root=REPO_ROOT)
    log.info("Run directory: %s", run_dir)
    try:
        metrics = _execute(cfg, plan, run_dir)
    except KeyboardInterrupt:
        metadata.finish(STATUS_INTERRUPTED)
        raise
    except BaseException as exc:
        log.exception("Run failed")
        metadata.finish(STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        metadata.finish(STATUS_FINISHED, primary_metric=metrics["primary_metric"])
        return metrics
    finally:
        run_logging.close()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_shared_vocabulary(student_tok: Any, teacher_tok: Any) -> None:
    """Student and teacher read the same input_ids, so their vocabularies must be identical."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(ConfigProblem(
            "model", "student and teacher tokenizers differ; token-level distillation needs one vocabulary.",
            None, "pick a pair that shares a tokenizer (e.g. model=minilm or model=bert_distilbert).",
        ))


def _execute(cfg: DictConfig, plan: RunPlan, run_dir: Path) -> dict[str, Any]:
    from forge.models.loading import load_model, load_tokenizer, resize_embeddings_if_needed
    from forge.models.lora import apply_lora, save_final_model
    from forge.teachers.strategy import finetune_teacher, load_teacher

    set_seed(cfg.seed)
    handler = plan.handler
    distilling = bool(cfg.mode.requires_teacher)
    kind = handler.model_kind
    device = _device()

    tokenizer = load_tokenizer(cfg.model.student)
    if distilling:
        _check_shared_vocabulary(tokenizer, load_tokenizer(cfg.model.teacher))
    data = handler.prepare(tokenizer)
    log.info("Data: %d training examples; eval sets %s", len(data.train),
             {name: len(ds) for name, ds in data.eval_sets.items()})

    student = load_model(cfg.model.student, kind=kind, num_labels=handler.num_labels,
                         attn_implementation=plan.attn_implementation)
    resize_embeddings_if_needed(student, tokenizer)
    if cfg.model.student.lora.enabled:
        student = apply_lora(student, cfg.model.student.lora, kind=kind)

    teacher: Optional[torch.nn.Module] = None
    if distilling:
        finetune = bool(cfg.teacher_strategy.finetune_first and not cfg.teacher_strategy.checkpoint)
        # The teacher's own fine-tuning never needs attention maps: run it on SDPA, then switch.
        teacher = load_teacher(cfg, num_labels=handler.num_labels, kind=kind,
                               attn_implementation="sdpa" if finetune else plan.attn_implementation)
        resize_embeddings_if_needed(teacher, tokenizer)
        if finetune:
            teacher = finetune_teacher(teacher, cfg, data, tokenizer, run_dir)
            if plan.attn_implementation != "sdpa":
                teacher.set_attn_implementation(plan.attn_implementation)
        plan.loss.bind(plan.student_info, plan.teacher_info)

    def score(model: torch.nn.Module) -> dict[str, float]:
        model.to(device)
        return evaluate_model(model, handler, data.eval_sets, data.collator,
                              batch_size=cfg.trainer.per_device_eval_batch_size, device=device)

    pre = {"student": score(student)}
    if teacher is not None:
        pre["teacher"] = score(teacher)
    log.info("Pre-training metrics: %s", pre)

    components = TrainingComponents(
        student=student, train_dataset=data.train, collator=data.collator, tokenizer=tokenizer,
        teacher=teacher, loss=plan.loss if distilling else None, alpha=float(cfg.alpha),
        teacher_trainable=bool(cfg.teacher_strategy.cotrain) and distilling,
    )
    trainer_cfg = OmegaConf.to_container(cfg.mode.trainer, resolve=True)
    trainer_cls = hydra.utils.get_class(trainer_cfg.pop("_target_"))
    args = training_arguments(cfg.trainer, output_dir=run_dir, seed=cfg.seed)
    trainer = trainer_cls.from_components(components, args, **trainer_cfg)
    train_output = trainer.train()
    _write_training_state(run_dir, trainer, train_output)

    post = {"student": score(student)}
    if teacher is not None:
        # A frozen teacher cannot have changed: reuse its pre-training scores.
        post["teacher"] = score(teacher) if components.teacher_trainable else dict(pre["teacher"])
    key = primary_key(handler, data.eval_sets)
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
        "train": {"global_step": trainer.state.global_step, "train_loss": train_output.training_loss,
                  **{k: v for k, v in train_output.metrics.items() if isinstance(v, (int, float))}},
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    log.info("Results\n%s\n\nrun directory: %s", format_report(pre, post, gap), run_dir)
    return metrics


def _write_training_state(run_dir: Path, trainer: Any, train_output: Any) -> None:
    """`training_state.json`: step counts and the full log history (incl. loss components)."""
    state = trainer.state
    write_json_atomic(run_dir / "training_state.json", {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epoch": state.epoch,
        "training_loss": train_output.training_loss,
        "log_history": state.log_history,
    })
