"""Fast inference through a quantized student: its rounded weights computed once per call, not once
per forward.

Why: torchao's fake quantization (QAT) recomputes every weight's scales and rounding in each forward
pass, and its int4 tensors dequantize in each forward too. Training needs that (the weights change
every step), but evaluation and sampling run hundreds of forwards through fixed weights: generating
48 tokens for 48 sentences through the fake-quantized SmolLM2-135M took minutes. Inside
`rounded_weights_fixed(model)` each fake-quantized layer returns its fake-quantized weight computed
once, and each weight-only int4 layer holds its dequantized weight: the very values the forward
would compute, so scores and samples are unchanged (tests/unit/test_quantized_inference.py checks
equality). On exit every layer is restored.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


class _FixedWeight(torch.nn.Module):
    """Stands in for a layer's weight fake-quantizer: returns the weight it computed once."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - the weight is fixed meanwhile
        return self.value


def _int4_weight_only(weight: Any) -> bool:
    try:
        from torchao.quantization import IntxUnpackedToInt8Tensor
    except ImportError:  # pragma: no cover - torchao is a dependency
        return False
    return isinstance(weight, IntxUnpackedToInt8Tensor) and weight.activation_quantization is None


@contextmanager
def rounded_weights_fixed(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, every fake-quantized or int4 weight-only layer of `model` uses its rounded
    weight computed once (module docstring). A model without such layers is left as it is."""
    restore: list[tuple[torch.nn.Module, str, Any]] = []
    with torch.no_grad():
        for module in model.modules():
            quantizer = getattr(module, "weight_fake_quantizer", None)
            weight = getattr(module, "weight", None)
            if isinstance(quantizer, torch.nn.Module) and isinstance(weight, torch.Tensor):
                restore.append((module, "weight_fake_quantizer", quantizer))
                module.weight_fake_quantizer = _FixedWeight(quantizer(weight).detach())
            elif _int4_weight_only(weight):
                restore.append((module, "weight", weight))
                module.weight = torch.nn.Parameter(weight.dequantize(), requires_grad=False)
    try:
        yield model
    finally:
        for module, name, value in reversed(restore):
            setattr(module, name, value)
