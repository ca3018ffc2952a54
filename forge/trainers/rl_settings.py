"""mode=rl's knobs: the `rl:` block (conf/mode/rl.yaml), checked at config time.

Most map one to one onto TRL's `GRPOConfig`; `kl_to` and `teacher_top_k` are Forge's: the KL term
pulls toward the reference (the student as the run starts, TRL's) or toward the teacher.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from forge.config.ranges import at_least, in_range, non_negative, positive, range_problems

#: TRL 1.16's `loss_type` variants Forge exposes (luspo and vespo need sequence-level importance
#: sampling, which Forge does not configure).
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
SCALE_REWARDS = ("group", "batch", "none")
KL_TARGETS = ("reference", "teacher")


@dataclass(frozen=True)
class RLSettings:
    """GRPO (Shao et al., 2024) through TRL, as `rl.*`.

    num_generations: completions sampled per prompt (the group whose rewards are normalised).
    max_completion_length / temperature / top_p: how completions are sampled.
    beta: weight of the KL term (0 = none, TRL's default). kl_to: what it pulls toward:
      `reference` (the student as the run started) or `teacher` (its log-probabilities through
      the teacher backend: on-policy distillation regularising RL).
    teacher_top_k: null reads the teacher's dense logits (hf backend); N its top-N view (servers),
      for `kl_to=teacher` and the `teacher_logprob` reward.
    loss_type / epsilon / scale_rewards / num_iterations: TRL's GRPO loss variant, clipping range,
      reward scaling and optimisation passes per generation.
    reward_weights: one weight per chosen reward, in the order of `reward=[...]` (null: all 1.0).
    """

    num_generations: int = at_least(2, default=8)
    max_completion_length: int = at_least(1, default=64)
    temperature: float = positive(default=1.0)
    top_p: float = in_range(0, 1, low_open=True, default=1.0)
    beta: float = non_negative(default=0.0)
    kl_to: str = "reference"
    teacher_top_k: Optional[int] = at_least(1, default=None)
    loss_type: str = "dapo"
    epsilon: float = positive(default=0.2)
    scale_rewards: str = "group"
    num_iterations: int = at_least(1, default=1)
    reward_weights: Optional[list[float]] = None

    def __post_init__(self) -> None:
        """Ranges and choices, in the words the config check uses."""
        problems = [p.render() for p in range_problems(dataclasses.asdict(self), RLSettings, "rl")]
        for key, allowed in (("kl_to", KL_TARGETS), ("loss_type", LOSS_TYPES), ("scale_rewards", SCALE_REWARDS)):
            value = getattr(self, key)
            if value not in allowed:
                problems.append(f"rl.{key}={value!r} is not one of: {', '.join(allowed)}")
        if problems:
            raise ValueError("; ".join(problems))

    def grpo_arguments(self, *, reward_count: int) -> dict[str, Any]:
        """GRPOConfig fields. With kl_to=teacher TRL must not build a reference model (beta 0 at
        construction); the trainer sets its beta and puts the teacher in the reference's place."""
        weights = list(self.reward_weights) if self.reward_weights is not None else [1.0] * reward_count
        return {
            "num_generations": self.num_generations,
            "max_completion_length": self.max_completion_length,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "beta": 0.0 if self.kl_to == "teacher" else self.beta,
            "loss_type": self.loss_type,
            "epsilon": self.epsilon,
            "scale_rewards": self.scale_rewards,
            "num_iterations": self.num_iterations,
            "reward_weights": [float(w) for w in weights],
            "log_completions": False,
        }
