"""Rounded weights computed once for inference (forge.models.quantized_inference): the same logits
and the same greedy tokens as the per-forward fake quantization and int4 dequantization, and every
layer restored afterwards (training still reaches the float weights)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from forge.models.quantization import Int4QAT  # noqa: E402
from forge.models.quantized_inference import rounded_weights_fixed  # noqa: E402
from tests.unit.test_quantization import tiny_llama  # noqa: E402

IDS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def greedy(model) -> torch.Tensor:
    return model.generate(IDS, max_new_tokens=5, do_sample=False, pad_token_id=0)


@pytest.mark.parametrize("scheme", ["int4_weight_only", "int8_dynamic_act_int4_weight"])
def test_fixed_rounding_gives_the_fake_quantized_forward_and_restores_the_layers(scheme):
    model = Int4QAT(group_size=32, scheme=scheme).prepare(tiny_llama())
    quantizers = [m.weight_fake_quantizer for m in model.modules() if hasattr(m, "weight_fake_quantizer")]
    expected, tokens = logits(model), greedy(model)
    with rounded_weights_fixed(model):
        assert torch.equal(logits(model), expected) and torch.equal(greedy(model), tokens)
    assert [m.weight_fake_quantizer for m in model.modules() if hasattr(m, "weight_fake_quantizer")] == quantizers
    model.train()
    model(IDS, labels=IDS).loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None  # straight-through to the float weight


def test_int4_layers_use_their_dequantized_weight_inside_and_keep_the_int4_one_after():
    from forge.models.int4_checkpoint import quantized_layers

    model = Int4QAT(group_size=32).convert(Int4QAT(group_size=32).prepare(tiny_llama()))
    before = quantized_layers(model)
    expected, tokens = logits(model), greedy(model)
    with rounded_weights_fixed(model):
        assert not quantized_layers(model)  # plain float weights meanwhile
        assert torch.equal(logits(model), expected) and torch.equal(greedy(model), tokens)
    assert quantized_layers(model).keys() == before.keys()
    assert all(quantized_layers(model)[k] is before[k] for k in before)
