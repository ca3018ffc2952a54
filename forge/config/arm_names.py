"""A study arm's name, the same wherever it is computed: a sweep job's run directory (launch.py),
the jobs a sweep expects (forge.study.grid) and the report's grouping (forge.study.runs).

The arm is `study_arm` (an `arm=` option) or else the loss, followed by the values of the keys
named in `study_arm_keys`: a λ/β sweep with `study_arm_keys=[mode.trainer.lmbda,mode.trainer.beta]`
gives arms `gkd_lmbda0_beta0.5`, ..., and the report compares them as arms instead of averaging
them into one value per seed. Numbers are written the same whether they come from a typed config
(0.0) or from an override's text ("0"): `0`, `0.5`, `1e-05`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import yaml

_ABSENT = object()


def dotted_value(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at a dotted key of a nested mapping (a dict or an OmegaConf DictConfig)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node.get(part)
    return node


def setting_text(value: Any) -> str:
    """How a setting's value reads in an arm name: numbers in their shortest form, text as it is."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` as text; Hydra and Python read a number
            try:
                value = float(value)
            except ValueError:
                return value
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{float(value):g}"
    return str(value)


def short_names(keys: Sequence[str]) -> list[str]:
    """Each key's last part (`mode.trainer.beta` -> `beta`), or the whole key where two share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return [tail if last.count(tail) == 1 else key for key, tail in zip(keys, last)]


def arm_label(base: str, settings: Sequence[tuple[str, Any]]) -> str:
    """`gkd`, ((mode.trainer.lmbda, 0.0), (mode.trainer.beta, 0.5)) -> `gkd_lmbda0_beta0.5`."""
    names = short_names([key for key, _ in settings])
    return "_".join([base, *(f"{name}{setting_text(value)}" for name, (_, value) in zip(names, settings))])


def missing_arm_keys(config: Mapping[str, Any]) -> list[str]:
    """The keys of `study_arm_keys` this config does not have."""
    return [key for key in (config.get("study_arm_keys") or []) if dotted_value(config, key, _ABSENT) is _ABSENT]


def arm_of(config: Mapping[str, Any]) -> Optional[str]:
    """This run's arm (module docstring); None when the config names neither an arm nor a loss."""
    base = config.get("study_arm") or dotted_value(config, "loss.name")
    if not isinstance(base, str) or not base:
        return None
    keys = list(config.get("study_arm_keys") or [])
    return arm_label(base, [(key, dotted_value(config, key)) for key in keys])
