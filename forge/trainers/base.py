"""What every Forge trainer shares, as mixins over `transformers.Trainer` (or TRL's trainers):

- atomic checkpoints (`forge.runtime.checkpoints`): Trainer writes into a staging directory, Forge
  seals it with a marker and renames it into place, then keeps the last N complete ones;
- a guard that stops the run on a NaN/inf loss *before* backward, so no bad step is ever saved;
- evaluation through the task's own eval loop (`TrainingRuntime.eval_fn`) at `trainer.eval_steps`,
  reported to callbacks (the peak-metric tracker) like Trainer's own evaluation.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from forge.config.errors import ForgeFailure
from forge.runtime.checkpoints import finalize, latest_complete_checkpoint, rotate, staging_dir
from forge.trainers.logging_mixin import ComponentLoggingMixin

log = logging.getLogger("forge.train")


class NonFiniteLossError(ForgeFailure):
    """The training loss became NaN or infinite; the run stops before the bad update is applied."""


@dataclass
class TrainingRuntime:
    """Run-level services a trainer is given (not model pieces: those are TrainingComponents).

    keep_last: complete checkpoints to keep (None keeps all; the newest complete one is never deleted).
    eval_fn: model -> flat metrics, the task's own eval loop; used at `trainer.eval_steps`.
    callbacks: extra TrainerCallbacks (signal stop, peak tracker, tracker forwarding).
    on_checkpoint: called with (checkpoint_dir, step) after each checkpoint is sealed.
    """

    keep_last: Optional[int] = None
    eval_fn: Optional[Callable[[nn.Module], dict[str, float]]] = None
    eval_dataset: Any = None
    callbacks: list[Any] = field(default_factory=list)
    on_checkpoint: list[Callable[[Path, int], None]] = field(default_factory=list)
    checkpoint_extra: Optional[Callable[[], dict[str, Any]]] = None


class AtomicCheckpointMixin:
    """Checkpoints appear only complete: staged, sealed with a marker, renamed into place."""

    forge_runtime: TrainingRuntime
    _forge_staging_active = False

    def _get_output_dir(self, trial: Any) -> str:  # type: ignore[override]
        base = super()._get_output_dir(trial)  # type: ignore[misc]
        return str(Path(base) / ".staging") if self._forge_staging_active else base

    def _forge_barrier(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:  # type: ignore[override]
        run_dir = Path(super()._get_output_dir(trial))  # type: ignore[misc]
        step = self.state.global_step  # type: ignore[attr-defined]
        staged = staging_dir(run_dir, step)
        main = self.args.should_save  # type: ignore[attr-defined]
        if main:
            shutil.rmtree(staged, ignore_errors=True)
        self._forge_barrier()
        self._forge_staging_active = True
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._forge_staging_active = False
        self._forge_barrier()  # every rank has written its part (RNG state, shards)
        if main:
            runtime = self.forge_runtime
            extra = {"forge": runtime.checkpoint_extra()} if runtime.checkpoint_extra else None
            final = finalize(staged, run_dir / f"checkpoint-{step}", step=step, extra=extra)
            rotate(run_dir, runtime.keep_last, protect=[final])
            log.info("Saved complete checkpoint %s", final)
            for hook in runtime.on_checkpoint:
                hook(final, step)
        self._forge_barrier()


class TaskEvalMixin:
    """`trainer.eval_steps`: score the model being trained with the task's eval loop."""

    forge_runtime: TrainingRuntime

    def model_to_evaluate(self) -> nn.Module:
        return self.model  # type: ignore[attr-defined]

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:  # type: ignore[override]
        if self.forge_runtime.eval_fn is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # type: ignore[misc]
        scores = self.forge_runtime.eval_fn(self.model_to_evaluate())
        metrics = {f"{metric_key_prefix}/{k}": v for k, v in scores.items()}
        self.log(dict(metrics))  # type: ignore[attr-defined]
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)  # type: ignore[attr-defined]
        return metrics


class ForgeTrainerMixin(ComponentLoggingMixin, AtomicCheckpointMixin, TaskEvalMixin):
    """Put first in the bases of a Forge trainer: `class X(ForgeTrainerMixin, Trainer)`."""

    def _init_forge(self, runtime: Optional[TrainingRuntime]) -> None:
        self.forge_runtime = runtime or TrainingRuntime()
        self._init_component_logging()
        for callback in self.forge_runtime.callbacks:
            self.add_callback(callback)  # type: ignore[attr-defined]

    def guard_loss(self, loss: torch.Tensor, components: dict[str, Any]) -> None:
        """Raise NonFiniteLossError (before backward) if the loss is NaN or infinite."""
        if bool(torch.isfinite(loss.detach()).all()):
            return
        step = self.state.global_step  # type: ignore[attr-defined]
        parts = ", ".join(
            f"{k}={float(v.detach().float().mean()) if torch.is_tensor(v) else v:.4g}" for k, v in components.items()
        )
        last = latest_complete_checkpoint(Path(self.args.output_dir), "size")  # type: ignore[attr-defined]
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        raise NonFiniteLossError(
            f"the training loss became {float(loss.detach().float().mean())} at step {step + 1} "
            f"(components: {parts}). Training stopped before applying this update; {kept}. "
            "Lower trainer.learning_rate, set trainer.max_grad_norm, or check the data, then relaunch "
            "with run_dir=<this run directory> to continue from the last good checkpoint."
        )


def trainer_kwargs(runtime: Optional[TrainingRuntime]) -> dict[str, Any]:
    """Extra Trainer constructor arguments a runtime implies (an eval set makes eval_steps legal)."""
    if runtime is not None and runtime.eval_dataset is not None:
        return {"eval_dataset": runtime.eval_dataset}
    return {}
