"""`mode=rl`: GRPO on the student's own samples, scored by reward objects (`reward=[...]`),
optionally with a teacher inside the loop (the `teacher_logprob` reward, `rl.kl_to=teacher`)."""

from __future__ import annotations

from typing import Any, Optional

import hydra.utils
from omegaconf import DictConfig, OmegaConf
from trl import GRPOConfig

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts, TeacherNeeds
from forge.trainers.rl import RLTrainer
from forge.trainers.rl_settings import RLSettings

REWARD_FIX = "choose rewards with reward=chrf or reward=[chrf,length_penalty] (options: conf/reward/)"


class RLMode(Mode):
    """GRPO (TRL) with Forge's runtime; decoder (prompt → completion) tasks only."""

    uses_rewards = True
    accepts_teacher_context = True
    trainer_class = RLTrainer
    args_class = GRPOConfig
    settings_class = RLSettings
    settings_key = "rl"
    loss_note = "optimises rewards (reward=...), not a distillation loss"

    def __init__(self, name: str, trainer: Optional[Any] = None, rewards: Optional[Any] = None) -> None:
        super().__init__(name, _plain(trainer), _plain(rewards))
        self.rewards: list[Any] = []
        self.reward_problems: list[ConfigProblem] = []
        for key, spec in self.reward_specs.items():
            self._build_reward(str(key), spec)

    def _build_reward(self, key: str, spec: Any) -> None:
        from forge.rewards.base import Reward

        try:
            reward = hydra.utils.instantiate(spec, _convert_="all")
        except Exception as exc:  # noqa: BLE001 - reported as a config problem
            cause = exc.__cause__ or exc
            self.reward_problems.append(ConfigProblem(f"reward.{key}", f"could not be built: {cause}"))
            return
        if not isinstance(reward, Reward):
            self.reward_problems.append(ConfigProblem(f"reward.{key}._target_", "is not a forge.rewards.Reward.",
                                                      spec.get("_target_") if isinstance(spec, dict) else spec))
            return
        self.rewards.append(reward)
        self.reward_problems.extend(reward.check())

    # ---- config time ----------------------------------------------------------------------------

    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        """A teacher is in the loop when a reward reads it or the KL term pulls toward it."""
        kl_to_teacher = self.raw_settings.get("kl_to") == "teacher" and float(self.raw_settings.get("beta") or 0) > 0
        return kl_to_teacher or any(r.needs_teacher for r in self.rewards)

    def teacher_needs(self, parts: PlanParts) -> TeacherNeeds:
        top_k = self.raw_settings.get("teacher_top_k")
        return TeacherNeeds(via="backend", dense_logits=top_k is None, topk=top_k is not None)

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        from forge.models.kinds import model_kind

        problems = super().check(parts) + list(self.reward_problems)
        if not model_kind(parts.kind).generates:
            problems.append(ConfigProblem(
                "mode", f"mode={self.name} samples completions and rewards them, so it needs a decoder "
                        f"(prompt -> completion) task; task={parts.cfg.task.name} is {parts.kind}, which generates "
                        "nothing.", self.name, "use task=europarl_en_fr, or mode=sft / mode=kd for classification"))
        if not self.reward_specs:
            problems.append(ConfigProblem("reward", f"mode={self.name} needs at least one reward.", None, REWARD_FIX))
        if any(p.key.startswith("rl") for p in problems):
            return problems  # the settings below cannot be read
        return problems + self._settings_checks(parts)

    def _settings_checks(self, parts: PlanParts) -> list[ConfigProblem]:
        from forge.modes.rl_checks import rl_setting_problems

        return rl_setting_problems(self, parts)

    def cache_refusals(self, parts: PlanParts) -> list[str]:
        return [f"mode={self.name} scores completions the student samples during training (on-policy): "
                "the teacher must score each new sample"]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rewards": [r.describe() for r in self.rewards]}

    # ---- run time -------------------------------------------------------------------------------

    def trainer_arguments(self) -> dict[str, Any]:
        return self.settings.grpo_arguments(reward_count=len(self.rewards))

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"settings": self.settings, "rewards": self.rewards}


def _plain(node: Any) -> dict[str, Any]:
    """A config node (DictConfig or dict, possibly None) as a plain dict."""
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)
