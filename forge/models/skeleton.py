"""A model's module tree without its weights (on the meta device), for checks made at config time.

Why: whether a student recipe can be applied (which layers a quantizer would touch, their widths)
depends on the module classes the architecture builds, not on the weights. Building the model on
the meta device from its config costs no memory and no download, so the plan can refuse a recipe
before anything heavy loads.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from forge.models.layers import subset_config
from forge.models.loading import auto_class_for, load_config, normalize_spec


def model_skeleton(spec: Any, *, kind: str, num_labels: Optional[int] = None) -> torch.nn.Module:
    """The model `load_model(spec, kind=...)` would build (init_layers applied), with no weights."""
    from forge.models.kinds import model_kind

    s = normalize_spec(spec)
    config = load_config(s)
    for key, value in s.config_overrides.items():
        setattr(config, key, value)
    if model_kind(kind).label_head and num_labels is not None:
        config.num_labels = num_labels
    if s.init_layers is not None:
        config = subset_config(config, list(s.init_layers))
    with torch.device("meta"):
        return auto_class_for(kind).from_config(config)
