"""Which distillation families (F = feature, A = attention, R = response) a run's loss switches on.

The FAR study is a 2x2x2 factorial, so every run must be placed in a cell from its *resolved* loss
config, not from its arm's name: `combined_far loss.attention=null` is an FR run whatever it is
called. A family counts when its part is present and could contribute to the loss:

- composites (`CombinedLoss`): the part is non-null and its weight is not 0 (a missing weight is 1,
  as in `forge.losses.composite`);
- staged composites (`StagedLoss`): the part is non-null and some phase gives it a weight > 0;
- single-family losses: the family of the module their `_target_` lives in
  (`forge.losses.feature|attention|response`);
- `NoDistillation` (`ce`), or a mode that trains without a teacher (`sft`): no family.

Anything else (a custom `_target_`) gives `None`: unknown, so the run is kept in the per-arm table
but left out of the factorial, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

FAMILIES = ("feature", "attention", "response")
LETTERS = {"feature": "F", "attention": "A", "response": "R"}


@dataclass(frozen=True, order=True)
class Factors:
    """One cell of the 2x2x2 design: whether F, A and R are on."""

    F: bool
    A: bool
    R: bool

    @property
    def label(self) -> str:
        """'FAR', 'FR', ... and 'none' for the control cell (what the arm names encode)."""
        return "".join(letter for letter, on in zip("FAR", self.as_tuple()) if on) or "none"

    def as_tuple(self) -> tuple[bool, bool, bool]:
        return (self.F, self.A, self.R)

    @classmethod
    def from_families(cls, families: set[str]) -> "Factors":
        return cls(F="feature" in families, A="attention" in families, R="response" in families)


# The 8 cells in standard (Yates) order: none, F, A, FA, R, FR, AR, FAR.
ALL_CELLS: tuple[Factors, ...] = tuple(
    Factors(bool(f), bool(a), bool(r)) for r in (0, 1) for a in (0, 1) for f in (0, 1)
)


def _weight(weights: Optional[Mapping[str, Any]], family: str, default: float) -> float:
    if not isinstance(weights, Mapping) or weights.get(family) is None:
        return default
    try:
        return float(weights[family])
    except (TypeError, ValueError):
        return default


def _target(node: Any) -> str:
    return str(node.get("_target_") or "") if isinstance(node, Mapping) else ""


def loss_families(loss: Optional[Mapping[str, Any]]) -> Optional[set[str]]:
    """The families a resolved `loss` config node switches on; None when it cannot be told."""
    if not isinstance(loss, Mapping):
        return None
    target = _target(loss)
    if target.endswith(".NoDistillation"):
        return set()
    if target.endswith(".CombinedLoss"):
        return {f for f in FAMILIES
                if isinstance(loss.get(f), Mapping) and _weight(loss.get("weights"), f, 1.0) != 0.0}
    if target.endswith(".StagedLoss"):
        phases = [p for p in (loss.get("phases") or []) if isinstance(p, Mapping)]
        return {f for f in FAMILIES if isinstance(loss.get(f), Mapping)
                and any(_weight(p.get("weights"), f, 0.0) > 0.0 for p in phases)}
    for family in FAMILIES:
        if target.startswith(f"forge.losses.{family}."):
            return {family}
    return None


def run_factors(config: Mapping[str, Any], metadata: Optional[Mapping[str, Any]] = None) -> Optional[Factors]:
    """The cell of a run from its resolved config (config.yaml) and run_metadata.json, whose `mode`
    block says whether the mode trained with the loss object at all (sft does not)."""
    mode = (metadata or {}).get("mode")
    if isinstance(mode, Mapping) and mode.get("uses_loss") is False:
        return Factors(False, False, False)
    legacy = config.get("mode")  # run directories written before modes were objects
    if isinstance(legacy, Mapping) and legacy.get("requires_teacher") is False:
        return Factors(False, False, False)
    families = loss_families(config.get("loss"))
    return None if families is None else Factors.from_families(families)
