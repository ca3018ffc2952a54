"""Fine-tune a teacher on the task's CE with the SFT trainer, then seal it like a checkpoint.

Used by the frozen_sft / cotrain_sft teacher strategies (the teacher source injects it, so
`forge.teachers` never imports a trainer). The sealed directory holds the merged model and the
processor; a resumed run, or a later run with `teacher_strategy.checkpoint=<that dir>`, loads it
instead of paying for the fine-tuning again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig

from forge.data.base import PreparedData
from forge.trainers.args import training_arguments
from forge.trainers.base import TrainingRuntime
from forge.trainers.components import TrainingComponents
from forge.trainers.finetuning import FinetuningTrainer

log = logging.getLogger(__name__)


def finetune_teacher(teacher: Any, cfg: DictConfig, data: PreparedData, processor: Any, *, out_dir: Path,
                     seed: int, callbacks: Sequence[Any] = (),
                     on_sealing: Optional[Callable[[Path, Any], None]] = None) -> Optional[Any]:
    """Fine-tune `teacher` for `teacher_strategy.finetune_steps` and seal it into `out_dir`.

    With several ranks this is one data-parallel fine-tuning (each rank a shard of every batch of
    `finetune_batch_size` per rank) and rank 0 seals the result. Staging happens beside `out_dir`.
    `callbacks` carries the graceful-stop callback: a signal
    during this phase stops it early, nothing is sealed, and None is returned (the next attempt
    fine-tunes again). `on_sealing(staged_dir, model)` may add files before the seal.
    """
    from forge.models.recipe import save_final
    from forge.runtime.checkpoints import finalize

    ts = cfg.teacher_strategy
    out_dir = Path(out_dir)
    staging_root = out_dir.parent / ".staging"
    args = training_arguments(
        cfg.trainer,
        output_dir=staging_root / f"teacher_trainer-{os.getpid()}",
        seed=seed,
        max_steps=ts.finetune_steps,
        learning_rate=ts.finetune_learning_rate,
        per_device_train_batch_size=ts.finetune_batch_size,
        save_steps=0,
        eval_steps=0,
        warmup_ratio=0.0,
    )
    log.info("Fine-tuning the teacher for %d steps (teacher_strategy=%s)", ts.finetune_steps, ts.name)
    trainer = FinetuningTrainer.from_components(
        TrainingComponents(student=teacher, train_dataset=data.train, collator=data.collator, tokenizer=processor),
        args,
        runtime=TrainingRuntime(callbacks=list(callbacks)),
    )
    trainer.train()
    if trainer.state.global_step < ts.finetune_steps:
        return None  # every rank stopped at the same step (the stop callback agrees across ranks)
    if trainer.is_world_process_zero():  # one fine-tuning over every rank; rank 0 seals it
        staged = staging_root / f"{out_dir.name}-{os.getpid()}"
        save_final(teacher, processor, staged)
        if on_sealing is not None:
            on_sealing(staged, teacher)
        finalize(staged, out_dir, step=ts.finetune_steps)
    trainer.accelerator.wait_for_everyone()  # the others read it only once it is sealed
    return teacher
