"""Distillation losses: response (logits), feature (hidden states), attention, and their FAR
composites. `build_loss(cfg.loss)` turns the composed `loss` group into a `DistillationLoss`;
the caller then runs `validate(student_info, teacher_info)` and `bind(...)` before training.
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from forge.losses.attention import AttentionKL, HeadMap
from forge.losses.base import (
    DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, NoDistillation,
)
from forge.losses.composite import CombinedLoss, StagedLoss
from forge.losses.feature import FeatureCosine, FeatureLoss, FeatureMSE
from forge.losses.layer_map import LayerMapSpec, LayerMapStrategy, layer_pairs, validate_layer_map
from forge.losses.projection import Projection, make_projection
from forge.losses.response import (
    ResponseCE, ResponseCosine, ResponseKL, ResponseLoss, ResponseMSE, ResponseReverseKL,
)


def build_loss(loss_cfg: DictConfig | Mapping[str, Any]) -> DistillationLoss:
    """Instantiate the loss described by the composed `cfg.loss`.

    `name` is metadata (run paths, logs), not a constructor argument: it is removed before
    instantiation and set as `.name` on the result. Nested `_target_`s (composite parts) are
    instantiated recursively; Enums arrive as their string values.
    """
    from hydra.utils import instantiate

    if isinstance(loss_cfg, DictConfig):
        spec = OmegaConf.to_container(loss_cfg, resolve=True, enum_to_str=True)
    else:
        spec = OmegaConf.to_container(OmegaConf.create(dict(loss_cfg)), resolve=True,
                                      enum_to_str=True)
    name = spec.pop("name", None)
    loss = instantiate(spec, _convert_="all")
    if not isinstance(loss, DistillationLoss):
        raise TypeError(f"loss._target_ built {type(loss).__name__}, not a DistillationLoss")
    if name is not None:
        loss.name = str(name)
    return loss


__all__ = [
    "AttentionKL", "CombinedLoss", "DistillationLoss", "FeatureCosine", "FeatureLoss",
    "FeatureMSE", "ForwardView", "HeadMap", "LayerMapSpec", "LayerMapStrategy", "LossBatch",
    "LossOutput", "Needs", "NoDistillation", "Projection", "ResponseCE", "ResponseCosine",
    "ResponseKL", "ResponseLoss", "ResponseMSE", "ResponseReverseKL", "StagedLoss", "build_loss",
    "layer_pairs", "make_projection", "validate_layer_map",
]
