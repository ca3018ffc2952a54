"""Maps from student hidden states to the teacher's hidden size.

Projections belong to the loss module, so they are trained together with the student (the trainer
optimises the loss's parameters too) and saved with it; they are dropped when the student is
exported on its own.
"""

from __future__ import annotations


from torch import nn

from forge.config.loss_schema import Projection
from forge.losses.layer_map import enum_value



def make_projection(kind: Projection | str, in_features: int, out_features: int) -> nn.Module:
    """A fresh projection student-hidden -> teacher-hidden of the given kind."""
    value = enum_value(kind)
    try:
        kind = Projection(value)
    except ValueError:
        valid = ", ".join(p.value for p in Projection)
        raise ValueError(f"unknown projection {value!r}; valid: {valid}") from None
    if kind is Projection.identity:
        if in_features != out_features:
            raise ValueError(
                f"identity projection needs equal sizes, got {in_features} -> {out_features}"
            )
        return nn.Identity()
    if kind is Projection.linear:
        return nn.Linear(in_features, out_features)
    # The hidden width follows the teacher: the MLP's job is to reach the teacher's space.
    return nn.Sequential(
        nn.Linear(in_features, out_features), nn.GELU(), nn.Linear(out_features, out_features)
    )
