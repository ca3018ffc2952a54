"""Teacher strategies: frozen_sft, frozen_base, cotrain_sft, cotrain_base.

`finetune_first` fine-tunes the teacher on the task with the same FinetuningTrainer the SFT mode
uses, and saves it to `<run_dir>/teacher_sft/` (sealed like a checkpoint) so a resumed run, or any
later run with `teacher_strategy.checkpoint=<that dir>`, loads it instead of paying for it again.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from omegaconf import DictConfig

from forge.data.base import PreparedData
from forge.trainers.args import training_arguments
from forge.trainers.base import TrainingRuntime
from forge.trainers.components import TrainingComponents
from forge.trainers.finetuning import FinetuningTrainer

log = logging.getLogger(__name__)


TEACHER_DIR = "teacher_sft"


def sealed_teacher(path: Path) -> Optional[Path]:
    """`path` if it holds a completely written, sealed fine-tuned teacher, else None."""
    from forge.runtime.checkpoints import verify

    path = Path(path)
    return path if path.is_dir() and verify(path, "size").ok else None


def finetuned_teacher_in(run_dir: Path) -> Optional[Path]:
    """`<run_dir>/teacher_sft` if an earlier attempt of this run finished fine-tuning it."""
    return sealed_teacher(Path(run_dir) / TEACHER_DIR)


def load_teacher(cfg: DictConfig, *, num_labels: int, kind: str, attn_implementation: str,
                 checkpoint: Optional[Path] = None) -> Any:
    """The teacher's starting weights: a fine-tuned checkpoint if given, else the model spec."""
    from forge.models.loading import auto_class_for, load_model

    ts = cfg.teacher_strategy
    source = checkpoint or ts.checkpoint
    if source:
        log.info("Loading fine-tuned teacher from %s", source)
        return auto_class_for(kind).from_pretrained(str(source), attn_implementation=attn_implementation)
    return load_model(cfg.model.teacher, kind=kind, num_labels=num_labels, attn_implementation=attn_implementation)


def teacher_seed(cfg: DictConfig) -> int:
    """`teacher_strategy.seed`, else the run's seed. A factorial study fixes it so that every arm
    and every student seed distils from the same teacher (and shares its cached signals)."""
    seed = cfg.teacher_strategy.get("seed")
    return int(cfg.seed if seed is None else seed)


@contextmanager
def teacher_init_rng(cfg: DictConfig) -> Iterator[None]:
    """Initialise the teacher's new parameters (a classifier head) from `teacher_seed`, without
    touching the run's RNG: the teacher is then the same whatever the student's seed, and whether
    or not the run uses the cache."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(teacher_seed(cfg))
        yield


def finetune_teacher(teacher: Any, cfg: DictConfig, data: PreparedData, tokenizer: Any, run_dir: Path,
                     callbacks: Sequence[Any] = (), out_dir: Optional[Path] = None,
                     on_sealing: Optional[Callable[[Path, Any], None]] = None) -> Any:
    """Fine-tune the teacher on the task's CE; returns the trained teacher (also saved, sealed).

    out_dir: where the sealed teacher goes (default `<run_dir>/teacher_sft`; the shared teacher
    store passes its own directory). Staging happens beside it.

    `callbacks` carries the graceful-stop callback: a signal during this phase stops it early,
    and the caller sees `trainer.state.global_step < finetune_steps` and does not seal the teacher.
    """
    from forge.models.lora import save_final_model
    from forge.runtime.checkpoints import finalize

    ts = cfg.teacher_strategy
    out_dir = Path(out_dir) if out_dir is not None else run_dir / TEACHER_DIR
    staging_root = out_dir.parent / ".staging"
    args = training_arguments(
        cfg.trainer,
        output_dir=staging_root / f"teacher_trainer-{os.getpid()}",
        seed=teacher_seed(cfg),
        max_steps=ts.finetune_steps,
        learning_rate=ts.finetune_learning_rate,
        per_device_train_batch_size=ts.finetune_batch_size,
        save_steps=0,
        eval_steps=0,
        warmup_ratio=0.0,
    )
    log.info("Fine-tuning the teacher for %d steps (teacher_strategy=%s)", ts.finetune_steps, ts.name)
    trainer = FinetuningTrainer.from_components(
        TrainingComponents(student=teacher, train_dataset=data.train, collator=data.collator, tokenizer=tokenizer),
        args,
        runtime=TrainingRuntime(callbacks=list(callbacks)),
    )
    trainer.train()
    if trainer.state.global_step < ts.finetune_steps:
        return None  # stopped by a signal: nothing sealed, the next attempt fine-tunes again
    staged = staging_root / f"{out_dir.name}-{os.getpid()}"
    save_final_model(teacher, tokenizer, staged)
    if on_sealing is not None:
        on_sealing(staged, teacher)
    finalize(staged, out_dir, step=ts.finetune_steps)
    return teacher
