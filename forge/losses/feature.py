"""Feature (hidden-state) distillation over mapped layer pairs.

For each (student layer, teacher layer) pair the student's hidden state is projected to the
teacher's size and compared token by token; only real tokens (`batch.token_mask`) count, and the
value is the mean over those tokens, averaged over pairs. The projections are built in `bind`
(one per pair, an `nn.ModuleList`), so they are parameters of this module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from forge.config.errors import ConfigProblem
from forge.losses.base import (
    DistillationLoss, ForwardView, LossBatch, LossOutput, Needs, TeacherLayers, mean_rows, select_positions,
)
from forge.losses.layer_map import LayerMapSpec, enum_value, layer_pairs, validate_layer_map
from forge.losses.projection import Projection, make_projection
from forge.models.info import ModelInfo


class FeatureLoss(DistillationLoss):
    """Shared machinery; subclasses implement `per_token(student [N, H], teacher [N, H]) -> [N]`."""

    needs = Needs(hidden_states=True)
    family = "feature"

    def __init__(self, layer_map: Any = None, projection: Projection | str = "linear") -> None:
        super().__init__()
        self.layer_map = LayerMapSpec.coerce(layer_map)
        self.projection = Projection(enum_value(projection))
        self.pairs: list[tuple[int, int]] = []
        self.projections = nn.ModuleList()

    def validate(self, student: ModelInfo, teacher: ModelInfo) -> list[ConfigProblem]:
        key = self.config_key
        problems = validate_layer_map(
            self.layer_map, student.num_layers, teacher.num_layers, key=f"{key}.layer_map"
        )
        if self.projection is Projection.identity and student.hidden_size != teacher.hidden_size:
            problems.append(ConfigProblem(
                key=f"{key}.projection", value=self.projection.value,
                message=f"{type(self).__name__} needs hidden sizes to match or a projection: "
                        f"student {student.hidden_size}, teacher {teacher.hidden_size}",
                fix=f"set {key}.projection=linear (or mlp)",
            ))
        return problems

    def bind(self, student: ModelInfo, teacher: ModelInfo) -> None:
        self.ensure_valid(student, teacher)
        self.pairs = layer_pairs(self.layer_map, student.num_layers, teacher.num_layers)
        self.projections = nn.ModuleList(
            make_projection(self.projection, student.hidden_size, teacher.hidden_size)
            for _ in self.pairs
        )

    def teacher_layers(self) -> TeacherLayers:
        return TeacherLayers(hidden=frozenset(t for _, t in self.pairs))

    def per_token(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(
        self, student: ForwardView, teacher: ForwardView, batch: LossBatch, step: int
    ) -> LossOutput:
        if not self.pairs:
            raise RuntimeError(f"{type(self).__name__}.bind(student, teacher) was not called")
        if student.hidden_states is None or teacher.hidden_states is None:
            raise ValueError("feature losses need hidden_states from both models")
        values = []
        for (s_idx, t_idx), proj in zip(self.pairs, self.projections):
            hs = select_positions(student.hidden_states[s_idx], batch.rows_mask)
            ht = select_positions(teacher.hidden_states[t_idx].detach(), batch.rows_mask)
            values.append(mean_rows(self.per_token(_project(proj, hs), ht.float())))
        value = torch.stack(values).mean()
        return LossOutput(total=value, components={self.family: value.detach()})


def _project(proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the projection in its own dtype (float32 unless the loss module was cast), return fp32."""
    param = next(proj.parameters(), None)
    x = x.to(param.dtype) if param is not None else x.float()
    return proj(x).float()


class FeatureMSE(FeatureLoss):
    """FitNets: squared distance to the teacher's hidden state, averaged over the hidden size."""

    def per_token(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student - teacher).pow(2).mean(-1)


class FeatureCosine(FeatureLoss):
    """DistilBERT's cosine loss: 1 - cos(student, teacher) per token; aligns directions and
    ignores norms, which differ between models of different depth."""

    def per_token(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)
