"""Which student layer is compared with which teacher layer.

Layers are numbered as hidden-state indices: 0 is the embedding output and 1..L are the outputs of
the transformer blocks, so the same pairs serve feature losses (hidden_states[i]) and attention
losses (attentions[i - 1]; block 0 has no attention, hence `first_index=1` there).

`layer_pairs` is a pure function of the spec and the two depths, and `validate_layer_map` reports
every problem (as `ConfigProblem`s) so a bad map is refused at config time, before weights load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from forge.config.errors import ConfigError, ConfigProblem
from forge.config.loss_schema import LayerMapStrategy



def enum_value(value: Any) -> Any:
    """The plain value of an Enum member (Hydra may hand Enums or strings); anything else as is."""
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class LayerMapSpec:
    """A layer map as configured: `n` is read by last_n only, `pairs` by custom only."""

    strategy: LayerMapStrategy = LayerMapStrategy.uniform
    n: int = 1
    pairs: tuple[tuple[int, ...], ...] | None = None

    @classmethod
    def coerce(cls, value: Any) -> "LayerMapSpec":
        """Accept a spec, None (uniform), a strategy name, or a mapping / DictConfig of fields."""
        if value is None:
            return cls()
        if isinstance(value, LayerMapSpec):
            return value
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, (str, Enum)):
            value = {"strategy": value}
        if not isinstance(value, Mapping):
            raise TypeError(f"layer_map must be a mapping (strategy, n, pairs), got {value!r}")
        unknown = set(value) - {"strategy", "n", "pairs"}
        if unknown:
            raise ValueError(
                f"layer_map has unknown keys {sorted(unknown)}; known: strategy, n, pairs"
            )
        strategy = enum_value(value.get("strategy", LayerMapStrategy.uniform.value))
        try:
            strategy = LayerMapStrategy(strategy)
        except ValueError:
            valid = ", ".join(s.value for s in LayerMapStrategy)
            raise ValueError(f"unknown layer_map strategy {strategy!r}; valid: {valid}") from None
        pairs = value.get("pairs")
        if pairs is not None:
            pairs = tuple(tuple(int(i) for i in pair) for pair in pairs)
        n = value.get("n")
        return cls(strategy=strategy, n=1 if n is None else int(n), pairs=pairs)


def _round_half_up(x: float) -> int:
    """Python's round() is banker's rounding (round(2.5) == 2); a map should not depend on parity."""
    return int(math.floor(x + 0.5))


def validate_layer_map(
    spec: Any,
    student_layers: int,
    teacher_layers: int,
    *,
    first_index: int = 0,
    key: str = "loss.layer_map",
) -> list[ConfigProblem]:
    """Every reason the map cannot be built for these depths (empty list when it can)."""
    spec = LayerMapSpec.coerce(spec)
    problems: list[ConfigProblem] = []
    if student_layers < 1 or teacher_layers < 1:
        problems.append(ConfigProblem(
            key=key, value=enum_value(spec.strategy),
            message=f"needs models with at least one layer: student {student_layers}, "
                    f"teacher {teacher_layers}",
        ))
        return problems
    strategy = spec.strategy
    if spec.pairs is not None and strategy is not LayerMapStrategy.custom:
        problems.append(ConfigProblem(
            key=f"{key}.pairs", value=[list(p) for p in spec.pairs],
            message=f"pairs are only read by strategy=custom, but strategy is {strategy.value}",
            fix=f"set {key}.strategy=custom, or {key}.pairs=null",
        ))
    if strategy is LayerMapStrategy.last_n:
        limit = min(student_layers, teacher_layers)
        if not 1 <= spec.n <= limit:
            problems.append(ConfigProblem(
                key=f"{key}.n", value=spec.n,
                message=f"last_n needs 1 <= n <= min(student layers, teacher layers) = {limit} "
                        f"(student {student_layers}, teacher {teacher_layers})",
                fix=f"set {key}.n to a value in 1..{limit}",
            ))
    elif strategy is LayerMapStrategy.custom:
        problems.extend(_custom_problems(spec, student_layers, teacher_layers, first_index, key))
    return problems


def _custom_problems(
    spec: LayerMapSpec, student_layers: int, teacher_layers: int, first_index: int, key: str
) -> list[ConfigProblem]:
    if not spec.pairs:
        return [ConfigProblem(
            key=f"{key}.pairs", value=None,
            message="strategy=custom needs at least one [student, teacher] pair",
            fix=f"set {key}.pairs=[[1,2],[3,6]] (hidden-state indices, 0 = embeddings)",
        )]
    what = "0 = embeddings" if first_index == 0 else "attention exists for blocks 1..L only"
    valid = (f"student {first_index}..{student_layers}, teacher {first_index}..{teacher_layers} "
             f"({what})")
    problems = []
    for pair in spec.pairs:
        if len(pair) != 2:
            problems.append(ConfigProblem(
                key=f"{key}.pairs", value=list(pair),
                message="each pair must be [student_layer, teacher_layer]",
            ))
            continue
        s, t = pair
        if not (first_index <= s <= student_layers and first_index <= t <= teacher_layers):
            problems.append(ConfigProblem(
                key=f"{key}.pairs", value=list(pair),
                message=f"pair [{s}, {t}] is out of range; valid layers: {valid}",
                fix=f"use indices within the valid range in {key}.pairs",
            ))
    return problems


def layer_pairs(
    spec: Any, student_layers: int, teacher_layers: int, *, first_index: int = 0,
    key: str = "loss.layer_map",
) -> list[tuple[int, int]]:
    """(student_index, teacher_index) pairs in hidden-state numbering; raises `ConfigError` when
    `validate_layer_map` finds problems."""
    spec = LayerMapSpec.coerce(spec)
    problems = validate_layer_map(
        spec, student_layers, teacher_layers, first_index=first_index, key=key
    )
    if problems:
        raise ConfigError(problems)
    ls, lt = student_layers, teacher_layers
    if spec.strategy is LayerMapStrategy.uniform:
        pairs = [(i, max(1, _round_half_up(i * lt / ls))) for i in range(1, ls + 1)]
    elif spec.strategy is LayerMapStrategy.last_n:
        pairs = [(ls - spec.n + k, lt - spec.n + k) for k in range(1, spec.n + 1)]
    elif spec.strategy is LayerMapStrategy.first_last:
        pairs = [(1, 1), (ls, lt)]
    else:
        pairs = [(int(s), int(t)) for s, t in spec.pairs or ()]
    return _unique(pairs)


def _unique(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop repeated pairs (first_last on a 1-layer student), keeping order."""
    seen: set[tuple[int, int]] = set()
    out = []
    for pair in pairs:
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out
