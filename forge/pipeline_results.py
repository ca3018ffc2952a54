"""The pipeline's last stage: final/ (and what trained beside the student), metrics.json, the
tracker's summary and the results table. Split from `forge.pipeline` (the stages before it)."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from forge.eval.loop import primary_key
from forge.eval.quantized_comparison import comparison, format_comparison, greater_is_better
from forge.eval.transfer import format_report, transfer_gap
from forge.plan import sharded
from forge.runtime.rundir import write_json_atomic
from forge.runtime.session import RunSession
from forge.runtime.training_state import mean_logged_loss

log = logging.getLogger("forge")


def save_and_report(s: RunSession, data: Any, processor: Any, student: torch.nn.Module, teacher: Any,
                    pre: dict[str, Any], post: dict[str, Any], trained: Any) -> dict[str, Any]:
    """final/ (and what trained beside the student), then the report (`report`)."""
    trainer = trained.trainer
    states = _full_states(s, trainer)  # FSDP: every rank takes part in gathering the sharded weights
    if s.ranks.is_main:
        _save_trained(s, processor, student, teacher, states)
    train_metrics = {**{k: v for k, v in trained.output.metrics.items() if isinstance(v, (int, float))},
                     "global_step": trainer.state.global_step, "train_loss": mean_logged_loss(trainer.state.log_history)}
    return report(s, data, pre, post, train=train_metrics, peak=trained.state.peak(), step=trainer.state.global_step)


def report(s: RunSession, data: Any, pre: dict[str, Any], post: dict[str, Any], *, train: dict[str, Any],
           peak: Any, step: int) -> dict[str, Any]:
    """metrics.json (main rank), the tracker's summary and the results table."""
    from forge.tracking.base import flatten

    handler = s.plan.handler
    key = primary_key(handler, data.eval_sets)
    gap = transfer_gap(key, student_pre=pre["student"][key], student_post=post["student"][key],
                       teacher_pre=pre.get("teacher", {}).get(key), teacher_post=post.get("teacher", {}).get(key),
                       greater_is_better=handler.greater_is_better)
    metrics = {"primary_metric": key, "greater_is_better": handler.greater_is_better, "pre": pre, "post": post,
               "greater_is_better_by_metric": {k: greater_is_better(k) for k in post["student"]},
               "transfer_gap": gap.as_dict(), "peak": peak, "train": train, **_final_facts(s)}
    if s.plan.quantizer is not None and (s.plan.mode.trains or s.plan.mode.quantizes_without_training):
        metrics["quantization"] = comparison(pre, post, trains=s.plan.mode.trains,
                                             quantizes_in_training=s.plan.quantizer.quantizes_in_training)
        log.info("Quantization, side by side\n%s", format_comparison(metrics["quantization"]))
    if s.ranks.is_main:
        write_json_atomic(s.layout.metrics, metrics)
    s.tracker.log(flatten({"post": post}), step=step)
    s.tracker.summary({"pre": pre, "post": post, "transfer_gap": gap.as_dict(), "peak": peak})
    log.info("Results\n%s\n\nrun directory: %s", format_report(pre, post, gap), s.layout.root)
    return metrics


def _final_facts(s: RunSession) -> dict[str, Any]:
    """{"final": size on disk (and the quantization recipe)} for a run that saved final/, else {}."""
    from forge.models.int4_checkpoint import directory_bytes

    if not s.layout.final.is_dir():
        return {}
    quantizer = s.plan.quantizer
    facts = {"bytes": directory_bytes(s.layout.final), "quantization": quantizer.recipe() if quantizer else None}
    log.info("final/: %.1f MB on disk%s", facts["bytes"] / 1e6, f" ({facts['quantization']})" if quantizer else "")
    return {"final": facts}


def _full_states(s: RunSession, trainer: Any) -> dict[str, Optional[dict[str, Any]]]:
    """With FSDP, the unsharded state dicts of what trained (gathered by every rank, held by rank 0),
    split by part ("student", "teacher", "loss"); without sharding, nothing (the modules are whole)."""
    if not sharded(s.cfg) or not s.ranks.distributed:
        return {}
    full = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    parts: dict[str, Optional[dict[str, Any]]] = {}
    wrapped = any(k.startswith("student.") for k in (full or {}))
    for part in ("student", "teacher", "loss"):
        prefix = f"{part}."
        parts[part] = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)} if wrapped and full \
            else (full if part == "student" else None)
    return parts


def _save_trained(s: RunSession, processor: Any, student: torch.nn.Module, teacher: Any,
                  states: dict[str, Optional[dict[str, Any]]]) -> None:
    """The merged student in final/, the loss's trained projections beside it, a co-trained teacher."""
    from safetensors.torch import save_file

    from forge.models.recipe import save_final

    save_final(student, processor, s.layout.final, state_dict=states.get("student"), quantizer=s.plan.quantizer)
    loss = s.plan.loss
    if s.plan.mode.uses_loss and any(True for _ in loss.parameters()):
        loss_state = states.get("loss") or loss.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in loss_state.items()}, str(s.layout.loss_projections))
    if teacher is not None and teacher.trainable and teacher.model is not None:
        save_final(teacher.model, processor, s.layout.teacher_final, state_dict=states.get("teacher"))
