"""Teacher strategies' shared facts: where a fine-tuned teacher is sealed, its seed, its weights.

frozen_sft / cotrain_sft fine-tune the teacher first (`forge.trainers.teacher_finetune`, injected by
the teacher source) and seal it in `<run_dir>/teacher_sft/`; frozen_base / cotrain_base use the
pretrained teacher; a `teacher_strategy.checkpoint` names an already fine-tuned one.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import DictConfig

from forge.runtime.layout import RunLayout

log = logging.getLogger(__name__)


def sealed_teacher(path: Path) -> Optional[Path]:
    """`path` if it holds a completely written, sealed fine-tuned teacher, else None."""
    from forge.runtime.checkpoints import verify

    path = Path(path)
    return path if path.is_dir() and verify(path, "size").ok else None


def finetuned_teacher_in(run_dir: Path) -> Optional[Path]:
    """`<run_dir>/teacher_sft` if an earlier attempt of this run finished fine-tuning it."""
    return sealed_teacher(RunLayout(run_dir).teacher_sft)


def load_teacher(cfg: DictConfig, *, num_labels: int, kind: str, attn_implementation: str,
                 checkpoint: Optional[Path] = None) -> Any:
    """The teacher's starting weights: a fine-tuned checkpoint if given, else the model spec."""
    from forge.models.loading import auto_class_for, load_model

    source = checkpoint or cfg.teacher_strategy.checkpoint
    if source:
        from forge.models.loading import normalize_spec

        log.info("Loading fine-tuned teacher from %s", source)
        overrides = normalize_spec(cfg.model.teacher).config_overrides
        return auto_class_for(kind).from_pretrained(str(source), attn_implementation=attn_implementation,
                                                    **overrides)
    return load_model(cfg.model.teacher, kind=kind, num_labels=num_labels, attn_implementation=attn_implementation)


def load_teacher_for(cfg: DictConfig, handler: Any, processor: Any, *, attn_implementation: str,
                     checkpoint: Optional[Path] = None) -> Any:
    """The teacher as a run builds it: its new head drawn from `teacher_seed`, its embeddings grown
    to the processor's vocabulary. Used by the teacher source and by `forge.open_run`."""
    from forge.models.loading import resize_embeddings_if_needed
    from forge.models.recipe import tokenizer_of

    with teacher_init_rng(cfg):
        model = load_teacher(cfg, num_labels=handler.num_labels, kind=handler.model_kind, checkpoint=checkpoint,
                             attn_implementation=attn_implementation)
    resize_embeddings_if_needed(model, tokenizer_of(processor))
    return model


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
    from forge.runtime.seeds import seeded

    with seeded(teacher_seed(cfg)):
        yield
