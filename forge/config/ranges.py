"""Allowed ranges of numeric config keys, declared on the schema dataclasses, and their checker.

A schema field says its range where it is declared:

    max_steps: int = at_least(1, default=100)
    learning_rate: float = positive(default=5e-5)
    dropout: float = in_range(0, 1, high_open=True, default=0.05)
    max_train_samples: Optional[int] = at_least(1, default=None)   # null is allowed (Optional)

and `range_problems(values, SchemaClass, "prefix")` reports every value outside its range as a
`ConfigProblem` naming the full dotted key, the value, the range in words and a fix. It reads a
DictConfig or a plain dict, recurses into nested dataclass fields (and lists of them), and skips
None, missing values and plain references to another key (`${seed}`: checked where it is set).

`config_range_problems(cfg)` walks a composed root config. Each node's schema is its structured
type (`OmegaConf.get_type`), which a node keeps after YAML is merged into it, so the subclass a group
option chose (GlueTaskConfig, CombinedLossConfig, ...) is the one checked, also where the root field
is typed `Any`. `unknown_key_problems` / `config_unknown_key_problems` do the same walk for keys the
schema does not have (a structured config accepts them through `+key=value`).

Nothing here imports a group's code: config is the ground floor.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from forge.config.errors import ConfigProblem

#: the dataclass field metadata key that holds a field's `Range`
RANGE_KEY = "forge_range"
#: numpy (and so transformers.set_seed) takes seeds in [0, 2**32 - 1]
SEED_MAX = 2**32 - 1
#: root keys that belong to Hydra, not to Forge's schema (present with return_hydra_config=True)
_FOREIGN_ROOT_KEYS = frozenset({"hydra"})
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][\w.\[\]]*\}$")  # ${a.b}: another key, no resolver


@dataclass(frozen=True)
class Range:
    """An interval; None on a side means unbounded there. `*_open` excludes that end."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def describe(self, nullable: bool = False) -> str:
        """In words: 'must be >= 1', 'must be > 0', 'must lie in [0, 1)' (+ ' or null')."""
        if self.low is not None and self.high is not None:
            text = (f"must lie in {'(' if self.low_open else '['}{_fmt(self.low)}, "
                    f"{_fmt(self.high)}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"must be {'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            text = f"must be {'<' if self.high_open else '<='} {_fmt(self.high)}"
        else:
            text = "must be a finite number"
        return text + (" or null" if nullable else "")

    def example(self, integer: bool) -> float:
        """A value inside the range, for fixes when the field's default cannot serve."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            value = low if not self.low_open else (high if not self.high_open else (low + high) / 2)
            if integer and not float(value).is_integer():
                value = math.floor(value) + 1
            return value
        if low is not None:
            return low if not self.low_open else (math.floor(low) + 1 if integer else low + 1)
        if high is not None:
            return high if not self.high_open else (math.ceil(high) - 1 if integer else high - 1)
        return 0


# ---- declaring ranges on schema fields -----------------------------------------------------------

def with_range(allowed: Range, **field_kwargs: Any) -> Any:
    """A dataclass field carrying `allowed` in its metadata; other `field()` arguments pass through."""
    metadata = dict(field_kwargs.pop("metadata", None) or {})
    metadata[RANGE_KEY] = allowed
    return dataclasses.field(metadata=metadata, **field_kwargs)


def at_least(low: float, **field_kwargs: Any) -> Any:
    """value >= low. `at_least(1, default=100)`."""
    return with_range(Range(low=low), **field_kwargs)


def positive(**field_kwargs: Any) -> Any:
    """value > 0."""
    return with_range(Range(low=0, low_open=True), **field_kwargs)


def non_negative(**field_kwargs: Any) -> Any:
    """value >= 0."""
    return with_range(Range(low=0), **field_kwargs)


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
             **field_kwargs: Any) -> Any:
    """low <= value <= high; `high_open=True` excludes high (`[0, 1)`), `low_open=True` excludes low."""
    return with_range(Range(low=low, high=high, low_open=low_open, high_open=high_open), **field_kwargs)


def seed_field(**field_kwargs: Any) -> Any:
    """A random seed: [0, 2**32 - 1], what numpy (and transformers.set_seed) accepts."""
    return in_range(0, SEED_MAX, **field_kwargs)


def field_range(schema_cls: type, name: str) -> Optional[Range]:
    """The Range declared on `schema_cls.<name>`, or None."""
    return _fields(schema_cls)[name].range


# ---- checking -------------------------------------------------------------------------------------

def range_problems(values: Any, schema_cls: type, prefix: str = "") -> list[ConfigProblem]:
    """Every value of `values` (DictConfig or plain mapping) outside its field's declared range.

    Keys are reported as `<prefix>.<field>` (nested: `loss.weights.feature`, lists:
    `loss.phases.0.until_step`). Keys absent from `values` are not checked (their defaults are).
    """
    return [problem for node, schema, path in _nodes(values, schema_cls, prefix)
            for problem in _node_range_problems(node, schema, path)]


def unknown_key_problems(values: Any, schema_cls: type, prefix: str = "") -> list[ConfigProblem]:
    """Every key of `values` (and of its nested dataclass-typed mappings) that `schema_cls` lacks."""
    return [problem for node, schema, path in _nodes(values, schema_cls, prefix)
            for problem in _node_unknown_keys(node, schema, path)]


def config_range_problems(cfg: Any) -> list[ConfigProblem]:
    """`range_problems` over a composed root config (every group, by each node's structured type)."""
    return range_problems(cfg, _root_schema(cfg), "")


def config_unknown_key_problems(cfg: Any) -> list[ConfigProblem]:
    """`unknown_key_problems` over a composed root config: `+trainer.foo=1` and the like."""
    return unknown_key_problems(cfg, _root_schema(cfg), "")


# ---- internals ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    range: Optional[Range]
    nullable: bool
    integer: bool
    default: Any
    child: Optional[type]       # a dataclass type of a nested mapping
    item_child: Optional[type]  # a dataclass type of list items


def _root_schema(cfg: Any) -> type:
    schema = OmegaConf.get_type(cfg) if isinstance(cfg, DictConfig) else None
    if schema is not None and dataclasses.is_dataclass(schema):
        return schema
    from forge.config.schema import ForgeConfig  # lazy: schema.py imports this module

    return ForgeConfig


@lru_cache(maxsize=None)
def _fields(schema_cls: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(schema_cls)
    out = {}
    for f in dataclasses.fields(schema_cls):
        hint = hints.get(f.name, Any)
        inner, nullable = _unwrap_optional(hint)
        origin = typing.get_origin(inner)
        args = typing.get_args(inner)
        item = args[0] if origin in (list, typing.List) and args else None
        out[f.name] = _Field(
            name=f.name,
            range=f.metadata.get(RANGE_KEY),
            nullable=nullable,
            integer=inner is int,
            default=f.default,
            child=inner if _is_dataclass_type(inner) else None,
            item_child=item if _is_dataclass_type(item) else None,
        )
    return out


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, hint is Any


def _is_dataclass_type(value: Any) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)


def _schema_of(node: Any, declared: Optional[type]) -> Optional[type]:
    """A DictConfig's own structured type wins (a subclass chosen by the option file), else the
    field's declared dataclass type (plain dicts)."""
    if isinstance(node, DictConfig):
        own = OmegaConf.get_type(node)
        if _is_dataclass_type(own):
            return own
    return declared


def _is_mapping(node: Any) -> bool:
    return isinstance(node, (DictConfig, Mapping))


def _is_sequence(node: Any) -> bool:
    return isinstance(node, (ListConfig, list, tuple))


def _nodes(values: Any, schema_cls: type, prefix: str) -> Iterator[tuple[Any, type, str]]:
    """(mapping, its schema, its dotted path) for `values` and every nested schema-typed mapping."""
    if not _is_mapping(values):
        return
    yield values, schema_cls, prefix
    fields = _fields(schema_cls)
    for key in _keys(values):
        spec = fields.get(key)
        if spec is None:
            continue
        child = _get(values, key)
        if child is _SKIP or child is None:
            continue
        path = _join(prefix, key)
        if _is_mapping(child):
            schema = _schema_of(child, spec.child)
            if schema is not None:
                yield from _nodes(child, schema, path)
        elif _is_sequence(child):
            for index, item in enumerate(child):
                if _is_mapping(item):
                    schema = _schema_of(item, spec.item_child)
                    if schema is not None:
                        yield from _nodes(item, schema, _join(path, str(index)))


_SKIP = object()


def _keys(values: Any) -> list[str]:
    return [str(k) for k in values.keys()]


def _get(values: Any, key: str) -> Any:
    """The value at `key`, or _SKIP when it is missing ('???'), a plain reference to another key
    (checked where it is set) or an interpolation that does not resolve (reported elsewhere)."""
    if isinstance(values, DictConfig):
        if OmegaConf.is_missing(values, key):
            return _SKIP
        node = values._get_node(key)
        if node is not None and node._is_interpolation() and _REFERENCE.match(str(node._value())):
            return _SKIP
        try:
            return values[key]
        except Exception:  # an unresolvable interpolation: not a range question
            return _SKIP
    value = values.get(key)
    return _SKIP if isinstance(value, str) and value == "???" else value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _node_range_problems(values: Any, schema_cls: type, prefix: str) -> list[ConfigProblem]:
    problems = []
    for key, spec in _fields(schema_cls).items():
        if spec.range is None or key not in values:
            continue
        value = _get(values, key)
        if value is _SKIP or not _is_number(value) or spec.range.contains(float(value)):
            continue
        path = _join(prefix, key)
        problems.append(ConfigProblem(key=path, message=spec.range.describe(spec.nullable) + ".",
                                      value=value, fix=_fix(path, spec)))
    return problems


def _fix(path: str, spec: _Field) -> str:
    """'set <key>=<the default>' when the default is in range, else a value from the range."""
    suggestion = spec.default
    if not (_is_number(suggestion) and spec.range.contains(float(suggestion))):
        suggestion = spec.range.example(spec.integer)
    text = f"set {path}={_fmt(suggestion)}"
    return text + (f" (or {path}=null)" if spec.nullable else "")


def _node_unknown_keys(values: Any, schema_cls: type, prefix: str) -> list[ConfigProblem]:
    known = list(_fields(schema_cls))
    problems = []
    for key in _keys(values):
        if key in known or (not prefix and key in _FOREIGN_ROOT_KEYS):
            continue
        path = _join(prefix, key)
        where = f"{prefix} ({schema_cls.__name__})" if prefix else f"the root config ({schema_cls.__name__})"
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {_join(prefix, close[0])}? " if close else "drop it; "
        visible = ", ".join(k for k in known if k != "_target_")
        # The value is left out: a mistyped key may carry a secret (+logger.api_key=...).
        problems.append(ConfigProblem(key=path, message=f"is not a key of {where}.",
                                      fix=f"{hint}valid keys: {visible}"))
    return problems


def _fmt(number: Any) -> str:
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return str(number)
