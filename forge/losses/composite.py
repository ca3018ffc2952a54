"""The FAR composites: weighted sums of a feature, an attention and a response loss.

`CombinedLoss` uses fixed weights; `StagedLoss` changes them with the training step (e.g. features
first, then responses). Both report each family's unweighted value under "feature", "attention",
"response", so logs show the breakdown whatever the weights are. Any family may be absent.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from forge.config.errors import ConfigProblem
from forge.losses.base import DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, TeacherLayers
from forge.models.info import ModelInfo

FAMILIES = ("feature", "attention", "response")


class _FamilyLoss(DistillationLoss):
    """Holds the parts (as submodules, so their projections are parameters of the composite)."""

    def __init__(
        self,
        feature: DistillationLoss | None = None,
        attention: DistillationLoss | None = None,
        response: DistillationLoss | None = None,
    ) -> None:
        super().__init__()
        given = {"feature": feature, "attention": attention, "response": response}
        self.parts = nn.ModuleDict({k: v for k, v in given.items() if v is not None})
        needs = Needs()
        for part in self.parts.values():
            needs = needs | part.needs
        self.needs = needs
        self._key_parts()

    def _key_parts(self) -> None:
        """Problems of a part are reported under loss.<family>.* (the key a user overrides)."""
        for family, part in self.parts.items():
            part.config_key = f"{self.config_key}.{family}"

    def validate(self, student: ModelInfo, teacher: ModelInfo) -> list[ConfigProblem]:
        self._key_parts()
        problems: list[ConfigProblem] = []
        if not self.parts:
            problems.append(ConfigProblem(
                key=self.config_key, value=type(self).__name__,
                message="has no feature, attention or response part",
                fix="use loss=ce for no distillation, or set one of loss.feature/attention/response",
            ))
        for part in self.parts.values():
            problems.extend(part.validate(student, teacher))
        return problems + self._weight_problems()

    def _weight_problems(self) -> list[ConfigProblem]:
        return []

    def bind(self, student: ModelInfo, teacher: ModelInfo) -> None:
        self._key_parts()
        for part in self.parts.values():
            part.bind(student, teacher)

    def teacher_layers(self) -> TeacherLayers:
        layers = TeacherLayers()
        for part in self.parts.values():
            layers = layers | part.teacher_layers()
        return layers

    def _family_values(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> dict[str, torch.Tensor]:
        return {family: part(student, teacher, batch, step).total
                for family, part in self.parts.items()}

    def _combine(
        self, values: Mapping[str, torch.Tensor], weights: Mapping[str, float], ref: torch.Tensor
    ) -> LossOutput:
        total = torch.zeros((), device=ref.device)
        for family, value in values.items():
            total = total + float(weights.get(family, 0.0)) * value
        return LossOutput(total=total, components={k: v.detach() for k, v in values.items()})


def _check_weights(key: str, weights: Mapping[str, float]) -> list[ConfigProblem]:
    problems = []
    for family, weight in weights.items():
        if family not in FAMILIES:
            problems.append(ConfigProblem(
                key=f"{key}.{family}", value=weight,
                message=f"unknown family; weights are named {', '.join(FAMILIES)}",
            ))
        elif weight < 0:
            problems.append(ConfigProblem(
                key=f"{key}.{family}", value=weight, message="weights must be >= 0",
            ))
    return problems


class CombinedLoss(_FamilyLoss):
    """total = Σ weights[family] · value(family) over present families; a missing weight is 1."""

    def __init__(
        self,
        feature: DistillationLoss | None = None,
        attention: DistillationLoss | None = None,
        response: DistillationLoss | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(feature=feature, attention=attention, response=response)
        given = dict(weights or {})
        self.weights = {f: float(given.pop(f, 1.0)) for f in FAMILIES}
        self.weights.update({k: float(v) for k, v in given.items()})  # unknown: reported by validate

    def _weight_problems(self) -> list[ConfigProblem]:
        return _check_weights(f"{self.config_key}.weights", self.weights)

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        values = self._family_values(student, teacher, batch, step)
        return self._combine(values, self.weights, batch.token_mask)


class StagedLoss(_FamilyLoss):
    """Weights follow phases over optimizer steps, a pure function of `step` (resume just works).

    phases: `[{until_step: 100, weights: {feature: 1, response: 0}}, {until_step: null, weights:
    {response: 1}}]`; phase k covers steps [until_step of phase k-1, until_step of phase k); the
    last phase has `until_step: null` and runs to the end. A family missing from a phase's weights
    weighs 0 there. ramp_steps > 0 blends linearly from the previous phase's weights to the next
    over that many steps after each boundary, instead of switching at once.
    """

    def __init__(
        self,
        feature: DistillationLoss | None = None,
        attention: DistillationLoss | None = None,
        response: DistillationLoss | None = None,
        phases: Sequence[Mapping[str, Any]] = (),
        ramp_steps: int = 0,
    ) -> None:
        super().__init__(feature=feature, attention=attention, response=response)
        self.phases = [
            (None if p.get("until_step") is None else int(p["until_step"]),
             {k: float(v) for k, v in dict(p.get("weights") or {}).items()})
            for p in phases
        ]
        self.ramp_steps = int(ramp_steps)

    def _weight_problems(self) -> list[ConfigProblem]:
        key = f"{self.config_key}.phases"
        problems: list[ConfigProblem] = []
        if not self.phases:
            return [ConfigProblem(key=key, value=[], message="needs at least one phase",
                                  fix="add {until_step: null, weights: {...}}")]
        previous = 0
        for i, (until, weights) in enumerate(self.phases):
            last = i == len(self.phases) - 1
            if last and until is not None:
                problems.append(ConfigProblem(
                    key=f"{key}.{i}.until_step", value=until,
                    message="the last phase must run to the end of training",
                    fix=f"set {key}.{i}.until_step=null",
                ))
            elif not last and (until is None or until <= previous):
                problems.append(ConfigProblem(
                    key=f"{key}.{i}.until_step", value=until,
                    message=f"only the last phase may be open-ended, and boundaries must increase "
                            f"(previous boundary {previous})",
                    fix=f"set {key}.{i}.until_step to a step > {previous}",
                ))
            else:
                previous = until if until is not None else previous
            problems.extend(_check_weights(f"{key}.{i}.weights", weights))
        if self.ramp_steps < 0:
            problems.append(ConfigProblem(key=f"{self.config_key}.ramp_steps",
                                          value=self.ramp_steps, message="must be >= 0"))
        return problems

    def weights_at(self, step: int) -> dict[str, float]:
        """The weight of each family at optimizer step `step`."""
        if not self.phases:
            return {f: 0.0 for f in FAMILIES}
        start = 0
        for i, (until, weights) in enumerate(self.phases):
            if until is None or step < until or i == len(self.phases) - 1:
                current = {f: weights.get(f, 0.0) for f in FAMILIES}
                if i == 0 or self.ramp_steps <= 0 or step >= start + self.ramp_steps:
                    return current
                before = self.phases[i - 1][1]
                frac = (step - start) / self.ramp_steps
                return {f: before.get(f, 0.0) + frac * (current[f] - before.get(f, 0.0))
                        for f in FAMILIES}
            start = until
        raise AssertionError("unreachable")  # pragma: no cover

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        weights = self.weights_at(step)
        values = self._family_values(student, teacher, batch, step)
        out = self._combine(values, weights, batch.token_mask)
        ref = out.total
        for family in self.parts:
            out.components[f"weight/{family}"] = torch.tensor(
                weights[family], device=ref.device, dtype=ref.dtype
            )
        return out
