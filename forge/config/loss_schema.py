"""Hydra schemas of the loss group, stored under `schema/loss/<name>`, and the loss settings' choices.

They live in the config layer (the ground floor): the losses import their choices from here, and
nothing here imports a loss.

Each `conf/loss/*.yaml` starts with `defaults: [/schema/loss@_here_: <name>, ...]`, so a typo in a
key, a string where a number belongs, or an unknown projection / layer-map strategy / head map fails
at compose time, with OmegaConf listing the valid Enum values; numeric fields declare their range
(`forge.config.ranges`: a temperature of 0 or a negative weight is refused before anything loads).
Defaults here match
`conf/base/loss/*.yaml` (temperature 2, uniform map, linear projection, averaged heads).

Composite parts (`loss.feature`, ...) have no `name`: `build_loss` instantiates them as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING

from forge.config.ranges import at_least, non_negative, positive


class LayerMapStrategy(str, Enum):
    """uniform: every student block to an evenly spaced teacher block; last_n: the last n blocks of
    each; first_last: first and last blocks; custom: explicit [student, teacher] pairs."""

    uniform = "uniform"
    last_n = "last_n"
    first_last = "first_last"
    custom = "custom"


class Projection(str, Enum):
    """identity: sizes must match; linear: one Linear (FitNets' regressor);
    mlp: Linear-GELU-Linear."""

    identity = "identity"
    linear = "linear"
    mlp = "mlp"


class HeadMap(str, Enum):
    """average: compare head-averaged attention maps (any head counts); match: head by head."""

    average = "average"
    match = "match"



@dataclass
class LayerMapConfig:
    """`n` is read by last_n, `pairs` ([[student, teacher], ...], hidden-state indices) by custom."""

    strategy: LayerMapStrategy = LayerMapStrategy.uniform
    n: int = at_least(1, default=1)
    pairs: Optional[List[List[int]]] = None


@dataclass
class ResponsePart:
    _target_: str = MISSING
    temperature: float = positive(default=2.0)


@dataclass
class FeaturePart:
    _target_: str = MISSING
    layer_map: LayerMapConfig = field(default_factory=LayerMapConfig)
    projection: Projection = Projection.linear


@dataclass
class AttentionPart:
    _target_: str = MISSING
    layer_map: LayerMapConfig = field(default_factory=LayerMapConfig)
    head_map: HeadMap = HeadMap.average


@dataclass
class FamilyWeights:
    """Combined weights; a family absent from the composite ignores its weight."""

    feature: float = non_negative(default=1.0)
    attention: float = non_negative(default=1.0)
    response: float = non_negative(default=1.0)


@dataclass
class PhaseWeights:
    """Staged weights: a family not named in a phase weighs 0 there."""

    feature: float = non_negative(default=0.0)
    attention: float = non_negative(default=0.0)
    response: float = non_negative(default=0.0)


@dataclass
class Phase:
    until_step: Optional[int] = at_least(1, default=None)
    weights: PhaseWeights = field(default_factory=PhaseWeights)


@dataclass
class LossConfig:
    """Every loss option: what to build and its name (the file stem; used in run paths and logs)."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class ResponseLossConfig(ResponsePart):
    """top_k: null = the teacher's full distribution; N = its top-N view (a decoder's vocabulary is
    too large to store per token: with `teacher.cache` the view is read from the top-k store)."""

    name: str = MISSING
    top_k: Optional[int] = at_least(1, default=None)


@dataclass
class FeatureLossConfig(FeaturePart):
    name: str = MISSING


@dataclass
class AttentionLossConfig(AttentionPart):
    name: str = MISSING


@dataclass
class CombinedLossConfig:
    _target_: str = "forge.losses.composite.CombinedLoss"
    name: str = MISSING
    feature: Optional[FeaturePart] = None
    attention: Optional[AttentionPart] = None
    response: Optional[ResponsePart] = None
    weights: FamilyWeights = field(default_factory=FamilyWeights)


@dataclass
class StagedLossConfig:
    _target_: str = "forge.losses.composite.StagedLoss"
    name: str = MISSING
    feature: Optional[FeaturePart] = None
    attention: Optional[AttentionPart] = None
    response: Optional[ResponsePart] = None
    phases: List[Phase] = field(default_factory=list)
    ramp_steps: int = non_negative(default=0)


def register_loss_schemas(cs) -> None:
    """Called by `forge.config.schema.register_schemas` with the ConfigStore instance."""
    cs.store(group="schema/loss", name="loss", node=LossConfig)
    cs.store(group="schema/loss", name="response", node=ResponseLossConfig)
    cs.store(group="schema/loss", name="feature", node=FeatureLossConfig)
    cs.store(group="schema/loss", name="attention", node=AttentionLossConfig)
    cs.store(group="schema/loss", name="combined", node=CombinedLossConfig)
    cs.store(group="schema/loss", name="staged", node=StagedLossConfig)
