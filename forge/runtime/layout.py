"""The one place that names the files of a run directory.

Every writer (pipeline, metadata, training state, logging, teacher fine-tuning, checkpoints) and
every reader (the study report, `forge.open_run`, the workbench) goes through `RunLayout`, so a
file is renamed in one line and no reader can drift from its writer:

    <run_dir>/
      config.yaml            the resolved config, secrets redacted (written first: marks a run dir)
      run_metadata.json      status (running | finished | failed | interrupted), attempts, versions
      output.log             the run's log (rank 0)
      pre_metrics.json       teacher and student scores before training (kept across resumes)
      training_state.json    step, last checkpoint, peak metric, log history
      metrics.json           pre/post scores, transfer gap, peak (only a finished run has it)
      checkpoint-N/          sealed checkpoints (forge_checkpoint.json marks a complete one)
      final/                 the merged student + tokenizer (+ loss projections)
      teacher_sft/           a teacher this run fine-tuned (frozen_sft / cotrain_sft)
      teacher_final/         a co-trained teacher as training left it
      wandb/, wandb_run_id   W&B's offline files and the id a resumed run continues
      .staging/              half-written checkpoints and models (never loaded)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
METADATA = "run_metadata.json"
LOG = "output.log"
PRE_METRICS = "pre_metrics.json"
TRAINING_STATE = "training_state.json"
METRICS = "metrics.json"
FINAL = "final"
TEACHER_SFT = "teacher_sft"
TEACHER_FINAL = "teacher_final"
RL_REFERENCE = "rl_reference"
LOSS_PROJECTIONS = "forge_loss_projections.safetensors"
STAGING = ".staging"
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_MARKER = "forge_checkpoint.json"
WANDB_DIR = "wandb"
WANDB_RUN_ID = "wandb_run_id"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory (nothing is created here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def pre_metrics(self) -> Path:
        return self.root / PRE_METRICS

    @property
    def training_state(self) -> Path:
        return self.root / TRAINING_STATE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def final(self) -> Path:
        return self.root / FINAL

    @property
    def loss_projections(self) -> Path:
        return self.final / LOSS_PROJECTIONS

    @property
    def teacher_sft(self) -> Path:
        return self.root / TEACHER_SFT

    @property
    def teacher_final(self) -> Path:
        return self.root / TEACHER_FINAL

    @property
    def rl_reference(self) -> Path:
        """mode=rl with a KL term: the student as the run started, where TRL loads its reference."""
        return self.root / RL_REFERENCE

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    @property
    def wandb_dir(self) -> Path:
        return self.root / WANDB_DIR

    @property
    def wandb_run_id(self) -> Path:
        return self.root / WANDB_RUN_ID

    def checkpoint(self, step: int) -> Path:
        return self.root / f"{CHECKPOINT_PREFIX}{step}"

    def staged_checkpoint(self, step: int) -> Path:
        return self.staging / f"{CHECKPOINT_PREFIX}{step}"

    def is_run_dir(self) -> bool:
        """A run directory is one that holds config.yaml (what a run writes first)."""
        return self.config.is_file()
