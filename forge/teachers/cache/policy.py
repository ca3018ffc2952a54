"""When the teacher-signal cache is correct, decided from the config before anything loads.

A cache replays yesterday's teacher on yesterday's inputs. That is only right when both are fixed:
a frozen teacher, and training inputs that are the same every epoch. `teacher.cache=auto` uses it
exactly then and otherwise says why not (log and run_metadata.json); `teacher.cache=on` turns the
same reasons into config errors; `off` never uses it.

The cache root also holds frozen_sft's fine-tuned teachers (`forge.teachers.cache.shared_teacher`).
Sharing one is right whenever the teacher stays frozen, even where its signals cannot be cached
(page images, on-policy GKD), so `share_teacher` is decided apart from `enabled`; `off` turns both
off (each run then fine-tunes its own teacher into `<run>/teacher_sft`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from forge.config.errors import ConfigProblem
from forge.teachers.cache.topk_store import LOGPROB_DTYPES, TopKRequest, TopKSpec

CACHE_MODES = ("auto", "on", "off")
CACHE_DTYPES = ("float16", "float32", "bfloat16")
#: what the signal cache (KD's logits / hidden states / attention maps) stores; the top-k store
#: keeps log-probabilities in 16 bits (`forge.teachers.cache.topk_store.LOGPROB_DTYPES`)
SIGNAL_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class CachePlan:
    """enabled: the run reads the teacher from the cache. reason: why not, when it does not.
    share_teacher: a teacher fine-tuned first (frozen_sft) is the one shared by its recipe."""

    enabled: bool
    reason: str
    root: Path
    dtype: str = "float16"
    batch_size: int = 64
    share_teacher: bool = False
    #: the top-k view read from the store in place of the teacher backend (decoder GKD); None: the
    #: cache stands in for the teacher's forward pass (KD's signals)
    topk: Optional[TopKSpec] = None


def default_cache_root() -> Path:
    """$FORGE_TEACHER_CACHE_DIR, else <Forge cache dir>/teacher_cache (shared by every run of
    the user; put it on a file system all SLURM nodes see)."""
    from forge.models.packaged import cache_dir

    env = os.environ.get("FORGE_TEACHER_CACHE_DIR")
    return Path(env) if env else cache_dir() / "teacher_cache"


def _plain(value: Any) -> str:
    """An Enum member (structured configs) or a string, as its string value."""
    return str(getattr(value, "value", value))


def refusals(cfg: DictConfig, handler: Any, needs: Any, mode_reasons: list[str], *,
             stores_view: bool = False) -> list[str]:
    """Every reason the cache would give wrong teacher signals (or cannot serve) for this run.

    needs: the mode's `TeacherNeeds`; mode_reasons: the mode's own (`Mode.cache_refusals`);
    stores_view: the mode reads a stored top-k view in place of its backend, which any backend
    (in process or a server) can build."""
    reasons = []
    ts = cfg.teacher_strategy
    if ts.get("cotrain"):
        reasons.append(f"the teacher is co-trained (teacher_strategy={ts.name}): it changes every step, so "
                       "signals stored earlier are stale")
    reasons += mode_reasons
    if needs is not None and needs.via == "backend" and not mode_reasons and not stores_view:
        reasons.append(f"mode={cfg.mode.name} reads its teacher through the teacher backend; the cache stands in "
                       "for a teacher's forward pass (mode=kd)")
    if ts.get("context") and not stores_view:  # the stored view is keyed by the teacher's own prompts too
        reasons.append("context baking scores the teacher on prompts the student's data does not hold")
    if getattr(handler, "cache_refusal", None):
        reasons.append(f"task={cfg.task.name}: {handler.cache_refusal}")
    if getattr(handler, "augments_inputs", False):
        reasons.append(f"task={cfg.task.name} augments its inputs (an example's tokens differ between epochs)")
    backend = cfg.get("teacher_backend")
    if backend is not None and backend.get("name") not in (None, "hf") and not stores_view:
        reasons.append(f"teacher_backend={backend.get('name')} serves a remote teacher")
    return reasons


def plan_cache(cfg: DictConfig, *, handler: Any, needs: Any, mode_reasons: list[str],
               stored: Optional[TopKRequest] = None) -> tuple[CachePlan, list[ConfigProblem]]:
    """The cache decision and, for teacher.cache=on where it would be wrong, the config problems.

    needs: the mode's `TeacherNeeds`, None when the mode has no teacher; stored: the top-k view the
    mode would read from the store in place of its backend (`Mode.stored_view`)."""
    node = cfg.get("teacher") or {}
    mode = _plain(node.get("cache", "auto"))
    root_value: Optional[str] = node.get("cache_root")
    root = Path(root_value).expanduser() if root_value else default_cache_root()
    dtype = _plain(node.get("cache_dtype", "float16"))
    batch = int(node.get("cache_batch_size", 64) or 64)
    problems: list[ConfigProblem] = []
    if mode not in CACHE_MODES:
        problems.append(ConfigProblem("teacher.cache", "is not a cache mode.", mode, f"valid: {', '.join(CACHE_MODES)}"))
        return CachePlan(False, "invalid setting", root, dtype, batch), problems
    if dtype not in CACHE_DTYPES:
        problems.append(ConfigProblem("teacher.cache_dtype", "is not a cache dtype.", dtype,
                                      f"valid: {', '.join(CACHE_DTYPES)}"))
    if needs is None:
        return CachePlan(False, f"mode={cfg.mode.name} has no teacher", root, dtype, batch), problems
    if mode == "off":
        return CachePlan(False, "teacher.cache=off", root, dtype, batch), problems
    if dtype in CACHE_DTYPES:
        problems += _dtype_problems(dtype, stored is not None)
    share = not cfg.teacher_strategy.get("cotrain")
    reasons = refusals(cfg, handler, needs, mode_reasons, stores_view=stored is not None)
    if reasons and mode == "on":
        for reason in reasons:
            problems.append(ConfigProblem("teacher.cache", f"cannot be on: {reason}.", mode,
                                          "set teacher.cache=off (or auto, which falls back to the live teacher)"))
    if reasons or problems:
        return CachePlan(False, "; ".join(reasons), root, dtype, batch, share_teacher=share), problems
    topk = TopKSpec(stored.k, dtype, stored.tail, stored.teacher_text) if stored is not None else None
    return CachePlan(True, "", root, dtype, batch, share_teacher=share, topk=topk), problems


def _dtype_problems(dtype: str, stores_view: bool) -> list[ConfigProblem]:
    """The top-k store keeps 16-bit log-probabilities; the signal cache stores what numpy has."""
    if stores_view and dtype not in LOGPROB_DTYPES:
        return [ConfigProblem("teacher.cache_dtype", "is not a 16-bit type: the top-k store keeps the teacher's "
                                                     "log-probabilities in 16 bits.", dtype,
                              f"valid here: {', '.join(LOGPROB_DTYPES)}")]
    if not stores_view and dtype not in SIGNAL_DTYPES:
        return [ConfigProblem("teacher.cache_dtype", "is not stored by the signal cache (logits, hidden states, "
                                                     "attention maps are numpy arrays; numpy has no bfloat16).",
                              dtype, f"valid here: {', '.join(SIGNAL_DTYPES)}")]
    return []
