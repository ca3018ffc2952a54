"""The teacher of a finished or interrupted run, loaded the way the run obtained it.

Where its weights are, in the order a run leaves them: a co-trained teacher as training left it
(`teacher_final/`, or the `teacher.*` part of the newest checkpoint of an unfinished run), the
teacher the run fine-tuned (`teacher_sft/`), the fine-tuned teacher shared by its recipe under the
cache root (recorded in run_metadata.json), `teacher_strategy.checkpoint`, else the pretrained teacher
(its head drawn from `teacher_strategy.seed`, as the run drew it). A served teacher has no weights here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from forge.run_view import RunNotReadable, RunView


def teacher_of(view: RunView, attn_implementation: str = "sdpa") -> Any:
    """The run's teacher, in eval mode (see the module docstring)."""
    from forge.models.recipe import load_trained_weights
    from forge.teachers.strategy import load_teacher_for

    cfg, meta, layout = view.config, view.metadata, view.layout
    if (meta.get("teacher") or {}).get("kind") == "served":
        backend = (meta.get("teacher") or {}).get("backend")
        raise RunNotReadable(f"the run's teacher was served by a backend ({backend}); Forge holds no weights of it")
    load = lambda checkpoint: load_teacher_for(cfg, view.handler(), view.processor(),  # noqa: E731
                                               attn_implementation=attn_implementation, checkpoint=checkpoint)
    if layout.teacher_final.is_dir():
        return load(layout.teacher_final).eval()
    start = _sealed_start(view)
    if cfg.teacher_strategy.get("cotrain") and view.checkpoints():
        return load_trained_weights(load(start), view.checkpoints()[0], part="teacher").eval()
    return load(start).eval()


def _sealed_start(view: RunView) -> Optional[Path]:
    """The fine-tuned teacher the run started from, if it had one (None: the spec or ts.checkpoint)."""
    from forge.teachers.strategy import finetuned_teacher_in, sealed_teacher

    own = finetuned_teacher_in(view.layout.root)
    if own is not None:
        return own
    shared = ((view.metadata.get("teacher_cache") or {}).get("teacher_dir")
              or (view.metadata.get("teacher") or {}).get("teacher_dir"))
    if shared and sealed_teacher(Path(shared)) is not None:
        return Path(shared)
    if view.config.teacher_strategy.get("finetune_first") and not view.config.teacher_strategy.get("checkpoint"):
        raise RunNotReadable(f"{view.layout.root}: the run fine-tunes its teacher, but no sealed fine-tuned "
                             "teacher is left (the run stopped before it was sealed, or the shared cache was cleared)")
    return None
