"""Teacher strategies: frozen_sft, frozen_base, cotrain_sft, cotrain_base.

`finetune_first` fine-tunes the teacher on the task with the same FinetuningTrainer the SFT mode
uses, and saves it to `<run_dir>/teacher_sft/` so later runs can load it with
`teacher_strategy.checkpoint=<that dir>` instead of paying for it again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import AutoModelForSequenceClassification

from forge.data.base import PreparedData
from forge.trainers.args import training_arguments
from forge.trainers.components import TrainingComponents
from forge.trainers.finetuning import FinetuningTrainer

log = logging.getLogger(__name__)


def load_teacher(cfg: DictConfig, *, num_labels: int, kind: str, attn_implementation: str) -> Any:
    """The teacher's starting weights: a fine-tuned checkpoint if given, else the model spec."""
    from forge.models.loading import load_model

    ts = cfg.teacher_strategy
    if ts.checkpoint:
        log.info("Loading fine-tuned teacher from %s", ts.checkpoint)
        return AutoModelForSequenceClassification.from_pretrained(
            ts.checkpoint, attn_implementation=attn_implementation
        )
    return load_model(cfg.model.teacher, kind=kind, num_labels=num_labels, attn_implementation=attn_implementation)


def finetune_teacher(teacher: Any, cfg: DictConfig, data: PreparedData, tokenizer: Any, run_dir: Path) -> Any:
    """Fine-tune the teacher on the task's CE; returns the trained teacher (also saved to disk)."""
    from forge.models.lora import save_final_model

    ts = cfg.teacher_strategy
    out_dir = run_dir / "teacher_sft"
    args = training_arguments(
        cfg.trainer,
        output_dir=out_dir,
        seed=cfg.seed,
        max_steps=ts.finetune_steps,
        learning_rate=ts.finetune_learning_rate,
        per_device_train_batch_size=ts.finetune_batch_size,
        save_steps=0,
        warmup_ratio=0.0,
    )
    log.info("Fine-tuning the teacher for %d steps (teacher_strategy=%s)", ts.finetune_steps, ts.name)
    trainer = FinetuningTrainer.from_components(
        TrainingComponents(student=teacher, train_dataset=data.train, collator=data.collator, tokenizer=tokenizer),
        args,
    )
    trainer.train()
    save_final_model(teacher, tokenizer, out_dir)
    return teacher
