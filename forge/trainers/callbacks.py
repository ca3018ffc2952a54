"""Trainer callbacks owned by Forge."""

from __future__ import annotations

import logging

from transformers import TrainerCallback

log = logging.getLogger("forge.train")


class LogMetricsCallback(TrainerCallback):
    """Send Trainer's periodic logs (loss, each loss component, lr) to the run's log (console and
    output.log) instead of a bare print, so output.log tells what happened step by step."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if logs:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
            log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)
