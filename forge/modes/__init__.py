"""Modes (`mode=sft|kd|gkd`): one object each, named by `_target_` in `conf/mode/<name>.yaml`.

`base.Mode` is the contract; the modes' modules are imported by Hydra when a config names them.
"""

from forge.modes.base import Mode, PlanParts, TeacherNeeds

__all__ = ["Mode", "PlanParts", "TeacherNeeds"]
