"""Which checkpoint a run continues from: `resume=auto|never|PATH`.

- `auto` (default): the run directory's newest complete checkpoint, if any; else start fresh.
- `never`: start fresh; refused if the run directory already holds checkpoints (nothing is
  overwritten silently; choose another run_dir or resume=auto).
- `PATH`: a `checkpoint-N` directory, or a run directory (its newest complete checkpoint). Used
  only when the run directory has no checkpoint of its own: a requeued task that already saved
  progress continues from that, never from a stale PATH pickled at submission time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from forge.config.errors import ConfigError, ConfigProblem
from forge.runtime.checkpoints import (
    CheckpointCheck, checkpoint_dirs, checkpoint_step, latest_complete_checkpoint, scan, skip_message, verify,
)

log = logging.getLogger("forge.resume")


@dataclass(frozen=True)
class ResumeDecision:
    checkpoint: Optional[Path]
    reason: str
    skipped: tuple[CheckpointCheck, ...] = field(default=())

    @property
    def resuming(self) -> bool:
        return self.checkpoint is not None


def _explicit_checkpoint(path: Path, verify_mode: str) -> Path:
    if not path.exists():
        raise ConfigError(ConfigProblem("resume", "does not exist.", str(path),
                                        "use resume=auto, resume=never, or a checkpoint-N / run directory path."))
    if checkpoint_step(path) is not None:
        check = verify(path, verify_mode)
        if not check.ok:
            raise ConfigError(ConfigProblem("resume", f"is not a complete checkpoint: {check.problem}.", str(path),
                                            "point at an earlier checkpoint-N of that run, or at the run directory."))
        return path
    found = latest_complete_checkpoint(path, verify_mode)
    if found is None:
        raise ConfigError(ConfigProblem("resume", "holds no complete checkpoint-N directory.", str(path),
                                        "point at a run directory with checkpoints, or use resume=auto."))
    return found


def verify_mode(cfg: Any) -> str:
    """`checkpoint.verify` as its plain value (the schema stores an Enum member, whose str() is
    `VerifyMode.sha256`, not `sha256`)."""
    node = cfg.get("checkpoint")
    if node is None:
        return "sha256"
    return str(OmegaConf.to_container(node, resolve=True, enum_to_str=True).get("verify", "sha256"))


def decide_resume(resume: str, run_dir: Path, *, verify_mode: str = "sha256") -> ResumeDecision:
    """Raise ConfigError for an unusable request, before anything is written."""
    run_dir = Path(run_dir)
    mode = str(resume or "auto")
    if mode == "never":
        if checkpoint_dirs(run_dir):
            raise ConfigError(ConfigProblem(
                "resume", f"the run directory {run_dir} already holds checkpoints.", "never",
                "use resume=auto to continue it, or a new run_dir to start over.",
            ))
        return ResumeDecision(None, "resume=never")
    own, skipped = scan(run_dir, verify_mode) if run_dir.is_dir() else (None, [])
    if own is not None:
        return ResumeDecision(own, f"the run directory's latest complete checkpoint ({own.name})", tuple(skipped))
    if mode == "auto":
        return ResumeDecision(None, "no complete checkpoint yet", tuple(skipped))
    return ResumeDecision(_explicit_checkpoint(Path(mode), verify_mode), f"resume={mode}", tuple(skipped))


def log_decision(decision: ResumeDecision) -> None:
    """Reported once the run's log exists, so output.log says what was skipped and why."""
    for check in decision.skipped:
        log.warning(skip_message(check))
    if decision.resuming:
        log.info("Resuming from %s (%s)", decision.checkpoint, decision.reason)
    elif decision.skipped:
        log.warning("No complete checkpoint to resume from: starting from scratch.")
