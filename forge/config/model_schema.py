"""Hydra schemas of the model group: the student and teacher specs (`model.student`, `model.teacher`),
LoRA, and the student's quantizer options (`model.student.quantization=<name>`). Split from
`forge.config.schema` the way the task and loss schemas are."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING

from forge.config.ranges import at_least, in_range, positive


class ModelSource(str, Enum):
    """Where weights come from: a hub id, a local directory, or a model shipped in a pip package."""

    hub = "hub"
    local = "local"
    packaged = "packaged"


@dataclass
class LoraSpec:
    enabled: bool = False
    r: int = at_least(1, default=8)
    alpha: int = positive(default=16)
    dropout: float = in_range(0, 1, high_open=True, default=0.05)
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])


@dataclass
class QuantizationConfig:
    """`model.student.quantization` (conf/model/student/quantization/<name>.yaml): a StudentQuantizer
    (forge.models.recipe) built by `_target_`; one subclass per option."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class Int4QATConfig(QuantizationConfig):
    """int4_qat: forge.models.quantization.Int4QAT. scheme: int4_weight_only |
    int8_dynamic_act_int4_weight | int4_tinygemm (CUDA); group_size must divide each layer's input width."""

    _target_: str = "forge.models.quantization.Int4QAT"
    name: str = "int4_qat"
    group_size: int = at_least(1, default=32)
    scheme: str = "int4_weight_only"


@dataclass
class Int4RTNConfig(Int4QATConfig):
    """int4_rtn: forge.models.quantization.Int4RTN (post-training round to nearest; same settings)."""

    _target_: str = "forge.models.quantization.Int4RTN"
    name: str = "int4_rtn"


@dataclass
class ModelSpec:
    """One model (student or teacher).

    name_or_path: hub id, local directory, or a packaged model name (see forge.models.packaged).
    init_layers: build a shallower model by copying these transformer blocks (0-based) from the
      source (DistilBERT-style initialisation); null keeps every layer.
    revision: hub revision (ignored for local/packaged).
    config_overrides: model config attributes set when it loads, e.g. `{hidden_dropout_prob: 0.0}`
      (a comparison without dropout, such as one rank against several).
    """

    source: ModelSource = ModelSource.hub
    name_or_path: str = MISSING
    init_layers: Optional[list[int]] = None
    revision: Optional[str] = None
    lora: LoraSpec = field(default_factory=LoraSpec)
    config_overrides: Any = None
    # Read for the student only: `model.student.quantization=int4_qat` (QAT: fake-quantized training, int4 final/).
    quantization: Optional[QuantizationConfig] = None


@dataclass
class ModelConfig:
    name: str = MISSING
    student: ModelSpec = field(default_factory=ModelSpec)
    teacher: Optional[ModelSpec] = None


@dataclass
class Int4CalibratedConfig(Int4QATConfig):
    """int4_gptq / int4_awq (forge.models.calibrated_quantization): post-training int4 calibrated on
    `calibration_samples` inputs (the task's tokenised training split, or `calibration_file`: one
    text per line), through llmcompressor in its own environment (`python`: its interpreter; null:
    .venv-quant/bin/python, which .ci/install_quant.sh builds)."""

    calibration_samples: int = at_least(0, default=64)
    calibration_max_length: int = at_least(1, default=256)
    calibration_file: Optional[str] = None
    python: Optional[str] = None


@dataclass
class Int4GPTQConfig(Int4CalibratedConfig):
    _target_: str = "forge.models.calibrated_quantization.Int4GPTQ"
    name: str = "int4_gptq"


@dataclass
class Int4AWQConfig(Int4CalibratedConfig):
    _target_: str = "forge.models.calibrated_quantization.Int4AWQ"
    name: str = "int4_awq"
