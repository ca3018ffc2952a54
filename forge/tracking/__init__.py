"""Experiment tracking: one small `Tracker` interface, a no-op default and a W&B backend.

The pipeline talks only to `Tracker` (start/log/summary/finish) so that training code never
imports wandb, and `logger=none` costs nothing. `conf/logger/*.yaml` picks the backend.
"""

from forge.tracking.base import NullTracker, Tracker, is_main_process
from forge.tracking.callback import TrackerCallback

__all__ = ["NullTracker", "Tracker", "TrackerCallback", "WandbTracker", "is_main_process"]


def __getattr__(name: str):
    # Imported lazily: `import wandb` costs ~1 s and is not needed for logger=none.
    if name == "WandbTracker":
        from forge.tracking.wandb_tracker import WandbTracker

        return WandbTracker
    raise AttributeError(name)
