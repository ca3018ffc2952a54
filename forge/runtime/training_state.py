"""`training_state.json`: where training stands, rewritten at every checkpoint and at the end.

Holds the step counts, the last complete checkpoint, the peak-metric tracker's best value and
step, every resume (from which checkpoint, when), and Trainer's log history (loss and each loss
component). A run killed at any moment leaves the state of its last checkpoint here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from forge.runtime.layout import RunLayout
from forge.runtime.metadata import now_iso
from forge.runtime.rundir import read_json, write_json_atomic



class TrainingStateWriter:
    def __init__(self, run_dir: Path, *, primary_metric: str, enabled: bool = True) -> None:
        """enabled: this process writes the file (rank 0 of a job with several ranks)."""
        self.path = RunLayout(run_dir).training_state
        self.enabled = enabled
        self.primary_metric = primary_metric
        self.trainer: Any = None
        self.last_checkpoint: Optional[str] = None
        self.resumes: list[dict[str, Any]] = []
        if self.path.is_file():
            try:
                previous = read_json(self.path)
                self.resumes = list(previous.get("resumes", []))
                self.last_checkpoint = previous.get("last_checkpoint")
            except (OSError, ValueError):
                pass

    def attach(self, trainer: Any, *, resumed_from: Optional[Path]) -> None:
        self.trainer = trainer
        if resumed_from is not None:
            self.resumes.append({"from_checkpoint": Path(resumed_from).name, "time": now_iso()})

    def _tracker(self) -> Any:
        from forge.trainers.callbacks import PeakMetricTracker

        if self.trainer is None:
            return None
        # Trainer replaces stateful callbacks with restored copies on resume: look it up each time.
        found = [cb for cb in self.trainer.callback_handler.callbacks if isinstance(cb, PeakMetricTracker)]
        return found[0] if found else None

    def peak(self) -> dict[str, Any]:
        tracker = self._tracker()
        if tracker is None:
            return {"metric": self.primary_metric, "best_value": None, "best_step": None}
        return tracker.summary()

    def checkpoint_extra(self) -> dict[str, Any]:
        """What the checkpoint marker records beyond files: the step that drives staged-loss
        schedules and the peak tracker (both are also restored from trainer_state.json)."""
        step = self.trainer.state.global_step if self.trainer is not None else None
        return {"loss_schedule_step": step, "peak": self.peak(), "saved_at": now_iso()}

    def on_checkpoint(self, checkpoint: Path, step: int) -> None:
        self.last_checkpoint = Path(checkpoint).name
        self.write(status="training")

    def write(self, *, status: str, **extra: Any) -> None:
        if not self.enabled:
            return
        state = self.trainer.state if self.trainer is not None else None
        write_json_atomic(self.path, {
            "status": status,
            "global_step": state.global_step if state else 0,
            "max_steps": state.max_steps if state else None,
            "epoch": state.epoch if state else None,
            "last_checkpoint": self.last_checkpoint,
            "peak": self.peak(),
            "resumes": self.resumes,
            **extra,
            "log_history": state.log_history if state else [],
        })


def mean_logged_loss(log_history: list[dict[str, Any]]) -> Optional[float]:
    """Mean training loss over every step, from the logged interval means (weighted by the steps
    each covers). Unlike Trainer's `train_loss`, it covers all attempts of a resumed run."""
    total, steps, previous = 0.0, 0, 0
    for entry in sorted((e for e in log_history if "loss" in e and "step" in e), key=lambda e: e["step"]):
        width = entry["step"] - previous
        if width <= 0:
            continue
        total += float(entry["loss"]) * width
        steps += width
        previous = entry["step"]
    return total / steps if steps else None
