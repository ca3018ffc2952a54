"""Bridge from transformers' Trainer logging to a `Tracker`.

Trainer already assembles every scalar Forge reports (loss, `loss/<component>`, learning_rate,
grad_norm, eval metrics) into `logs` at each logging step; forwarding that dict keeps a single
source of truth and avoids transformers' own WandbCallback (run Trainer with `report_to="none"`,
or each value is logged twice and the run id is not Forge's).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from forge.tracking.base import Tracker


class TrackerCallback(TrainerCallback):
    """`on_log` -> `tracker.log(logs, step=state.global_step)`; non-numeric entries are dropped there."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            self.tracker.log(dict(logs), step=state.global_step)
