"""INT4 quantization-aware training of the student through torchao (the student recipe's quantizer).

`prepare` swaps every quantizable linear layer for torchao's fake-quantized one: the forward pass
sees weights rounded to 4-bit levels per group (straight-through gradients), so training, and
distillation, learn weights that survive rounding. `convert` (after LoRA is merged) replaces the
fake quantization by real 4-bit weights (torchao's int4 values held in int8, with a scale and zero
point per group). The converted forward equals the fake-quantized one exactly.

Schemes (`model.student.quantization.scheme`):
- `int4_weight_only`: weights int4 per group, activations float (torchao `IntxWeightOnlyConfig`);
- `int8_dynamic_act_int4_weight`: also fake-quantizes activations to int8 per token
  (`Int8DynamicActivationIntxWeightConfig`);
- `int4_tinygemm`: torchao's packed int4 kernel layout (`Int4WeightOnlyConfig`), CUDA only.

Which layers: every `nn.Linear` except the output heads (`lm_head`, `classifier`, `score`): a tied
LM head shares the embedding matrix, and a classifier head is a few hundred weights. Each layer's
input width must be a multiple of `group_size`; `problems` says which layer is not, before anything
trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Optional, Sequence

import torch

from forge.config.errors import ConfigProblem

SCHEMES = ("int4_weight_only", "int8_dynamic_act_int4_weight", "int4_tinygemm")
CUDA_ONLY = ("int4_tinygemm",)
HEAD_NAMES = ("lm_head", "classifier", "score")


def quantizable_linears(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Linear]]:
    """(name, layer) of every linear layer this recipe quantizes (module docstring)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in HEAD_NAMES:
            yield name, module


@dataclass(frozen=True)
class Int4QAT:
    """The `int4_qat` quantizer: `prepare` before LoRA, `convert` after LoRA is merged."""

    #: whether `convert` needs calibration token ids (GPTQ/AWQ do: forge.models.calibrated_quantization)
    needs_calibration: ClassVar[bool] = False
    #: whether the student trains through the quantization (fake quantization from `prepare` on)
    quantizes_in_training: ClassVar[bool] = True
    group_size: int = 32
    scheme: str = "int4_weight_only"
    name: str = "int4_qat"

    def recipe(self) -> dict[str, Any]:
        """What `final/quantization.json` and metrics.json record of this quantizer."""
        return {"method": self.name, "scheme": self.scheme, "group_size": self.group_size}

    def base_config(self) -> Any:
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup

        if self.scheme == "int8_dynamic_act_int4_weight":
            return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                         weight_granularity=PerGroup(self.group_size))
        if self.scheme == "int4_tinygemm":
            from torchao.quantization import Int4WeightOnlyConfig

            return Int4WeightOnlyConfig(group_size=self.group_size)
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(self.group_size))

    def problems(self, model: torch.nn.Module, key: str = "model.student.quantization") -> list[ConfigProblem]:
        """Everything that would make prepare/convert fail or quantize nothing, said per key."""
        if self.scheme not in SCHEMES:
            return [ConfigProblem(f"{key}.scheme", "is not a quantization scheme.", self.scheme,
                                  f"valid: {', '.join(SCHEMES)}")]
        problems = []
        if self.scheme in CUDA_ONLY and not torch.cuda.is_available():
            problems.append(ConfigProblem(f"{key}.scheme", "needs torchao's CUDA int4 kernels; this machine has no "
                                          "CUDA device.", self.scheme,
                                          "use scheme=int4_weight_only (int4 weights per group, the same group size, on CPU)"))
        layers = list(quantizable_linears(model))
        if not layers:
            problems.append(ConfigProblem(key, f"finds no linear layer to quantize in {type(model).__name__} "
                                          "(torchao quantizes nn.Linear weights only).", "int4_qat",
                                          "use a transformer student, or drop model.student.quantization"))
        uneven = [f"{name} ({layer.in_features})" for name, layer in layers if layer.in_features % self.group_size]
        if uneven:
            more = f" and {len(uneven) - 4} more" if len(uneven) > 4 else ""
            problems.append(ConfigProblem(f"{key}.group_size", "does not divide the input width of "
                                          f"{', '.join(uneven[:4])}{more}.", self.group_size,
                                          "pick a group size that divides every layer's input width (e.g. 32 or 64)"))
        return problems

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return self._apply(model, "prepare")

    def convert(self, model: torch.nn.Module, calibration: Optional[Sequence[Sequence[int]]] = None) -> torch.nn.Module:
        """Real int4 weights in place of the fake-quantized ones (`calibration` is not used: rounding
        to nearest needs none)."""
        return self._apply(model, "convert")

    def save(self, model: torch.nn.Module, directory: str) -> None:
        """Write the converted model (real int4 weights) into `directory` (forge.models.int4_checkpoint)."""
        from forge.models.int4_checkpoint import save_quantized

        save_quantized(model, directory, self.recipe())

    def _apply(self, model: torch.nn.Module, step: str) -> torch.nn.Module:
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig

        chosen = {id(layer) for _, layer in quantizable_linears(model)}
        quantize_(model, QATConfig(self.base_config(), step=step), filter_fn=lambda m, _: id(m) in chosen)
        return model


@dataclass(frozen=True)
class Int4RTN(Int4QAT):
    """The `int4_rtn` quantizer: post-training round-to-nearest int4 (torchao `quantize_` with the
    same base config), nothing during training. `mode=ptq` applies it to the student as it loads;
    with a training mode the student trains in float and is rounded when final/ is saved. Its
    rounding is the QAT quantizer's: converting an unprepared model equals prepare-then-convert."""

    name: str = "int4_rtn"
    quantizes_in_training: ClassVar[bool] = False

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def convert(self, model: torch.nn.Module, calibration: Optional[Sequence[Sequence[int]]] = None) -> torch.nn.Module:
        from torchao.quantization import quantize_

        from forge.models.int4_checkpoint import quantized_layers

        done = set(quantized_layers(model))
        chosen = {id(layer) for name, layer in quantizable_linears(model) if name not in done}
        quantize_(model, self.base_config(), filter_fn=lambda m, _: id(m) in chosen)
        return model
