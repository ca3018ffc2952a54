"""Trainer callbacks owned by Forge: run-log lines, graceful stop on signals, peak metrics."""

from __future__ import annotations

import logging
import math
import signal
from typing import Any, Optional

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from forge.runtime.ranks import RankContext
from forge.runtime.signals import StopRequest

log = logging.getLogger("forge.train")


class LogMetricsCallback(TrainerCallback):
    """Send Trainer's periodic logs (loss, each loss component, lr) to the run's log (console and
    output.log) instead of a bare print, so output.log tells what happened step by step."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)


class GracefulStopCallback(TrainerCallback):
    """Between optimizer steps: if a stop signal reached any rank, every rank saves a checkpoint
    now and stops, at the same step (SLURM signals every task; a user may signal one)."""

    def __init__(self, stop: Optional[StopRequest] = None, ranks: Optional[RankContext] = None) -> None:
        self.stop = stop
        self.ranks = ranks or RankContext.from_env()
        self.stopped_at_step: Optional[int] = None
        #: the signal that stopped training, as any rank received it (all ranks agree on it)
        self.stopped_by: Optional[int] = None

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        received = int(self.stop.signum or 0) if self.stop is not None else 0
        signum = self.ranks.agree_max(received)
        if signum:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
            self.stopped_by = signum
            where = "" if received else " (received by another rank)"
            log.warning("Stopping at step %d on %s%s: saving a checkpoint.", state.global_step,
                        signal.Signals(signum).name, where)
        return control


class PeakMetricTracker(TrainerCallback, ExportableState):
    """Best value of the headline eval metric and the step it was reached at.

    Exportable: Trainer stores its state in each checkpoint's trainer_state.json and restores it on
    resume, so the peak survives preemption.
    """

    def __init__(self, metric: str = "", greater_is_better: bool = True) -> None:
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.best_value: Optional[float] = None
        self.best_step: Optional[int] = None
        self.evaluations = 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: D102
        value = (metrics or {}).get(f"eval/{self.metric}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return control
        self.evaluations += 1
        better = self.best_value is None or (value > self.best_value if self.greater_is_better else value < self.best_value)
        if better:
            self.best_value, self.best_step = float(value), state.global_step
            log.info("New best %s = %.4f at step %d", self.metric, value, state.global_step)
        return control

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "best_value": self.best_value, "best_step": self.best_step,
                "greater_is_better": self.greater_is_better, "evaluations": self.evaluations}

    def state(self) -> dict:  # noqa: D102 - ExportableState
        return {
            "args": {"metric": self.metric, "greater_is_better": self.greater_is_better},
            "attributes": {"best_value": self.best_value, "best_step": self.best_step,
                           "evaluations": self.evaluations},
        }
