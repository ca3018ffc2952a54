"""Reward objects for GRPO (`mode=rl`), in TRL's reward-function shape.

Each reward is chosen with `reward=[name, ...]` (one YAML per option in `conf/reward/`) and built
with `hydra.utils.instantiate`; the trainer binds a `RewardContext` before training and TRL calls
`reward(completions, prompts=..., completion_ids=..., reference=..., ...) -> list[float]`.
"""

from forge.rewards.base import Reward, RewardContext, RewardError

__all__ = ["Reward", "RewardContext", "RewardError"]
