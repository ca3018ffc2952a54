"""final/ of an INT4 student: two int4 values per byte (round trip over every value), and a saved
converted tiny Llama loads back to the same forward, at about a quarter of the float file's size."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("torchao")

from forge.models.int4_checkpoint import (  # noqa: E402
    MANIFEST, directory_bytes, is_quantized_dir, load_quantized, pack_int4, quantized_layers, unpack_int4)
from forge.models.quantization import Int4QAT  # noqa: E402
from tests.unit.test_quantization import tiny_llama  # noqa: E402


def test_pack_then_unpack_is_the_identity_and_packs_two_values_per_byte():
    values = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 2)  # every int4 value, in both nibbles
    packed = pack_int4(values)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 16)
    assert torch.equal(unpack_int4(packed), values)
    assert int(pack_int4(torch.tensor([[-8, 7]], dtype=torch.int8))) == 0 + (15 << 4)  # low nibble first


def test_pack_refuses_values_outside_int4_and_an_odd_width():
    with pytest.raises(ValueError, match="int4 range"):
        pack_int4(torch.tensor([[8, 0]], dtype=torch.int8))
    with pytest.raises(ValueError, match="even"):
        pack_int4(torch.zeros(2, 3, dtype=torch.int8))


@pytest.mark.parametrize("scheme", ["int4_weight_only", "int8_dynamic_act_int4_weight"])
def test_a_saved_int4_model_loads_back_to_the_same_forward(tmp_path, scheme):
    quantizer = Int4QAT(group_size=32, scheme=scheme)
    model = quantizer.convert(quantizer.prepare(tiny_llama()))
    ids = torch.randint(0, 64, (2, 7))
    want = model(ids).logits
    quantizer.save(model, str(tmp_path))
    loaded = load_quantized(tmp_path)
    assert is_quantized_dir(tmp_path) and not loaded.training
    assert set(quantized_layers(loaded)) == set(quantized_layers(model))  # 2 layers x 7 linears
    assert len(quantized_layers(loaded)) == 14
    assert torch.equal(loaded(ids).logits, want)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # the tied head, written once
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["method"] == "int4_qat" and manifest["scheme"] == scheme and manifest["group_size"] == 32
    assert manifest["layers"]["model.layers.0.mlp.down_proj"]["shape"] == [64, 128]


def test_the_int4_file_is_about_a_quarter_of_the_float_file(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    float_dir, int4_dir = tmp_path / "fp32", tmp_path / "int4"
    model = LlamaForCausalLM(config)
    model.save_pretrained(float_dir)
    int4_dir.mkdir()
    quantizer = Int4QAT(group_size=32)
    quantizer.save(quantizer.convert(quantizer.prepare(model)), str(int4_dir))
    linear = sum(m.weight.numel() for _, m in quantizer_free_linears(LlamaForCausalLM(config)))
    # each linear weight: 4 bits, plus one fp32 scale and one int8 zero point per 32 weights
    expected = linear * (0.5 + 5 / 32) + (model.model.embed_tokens.weight.numel() + 2 * 256 + 256) * 4
    assert (int4_dir / "model.safetensors").stat().st_size == pytest.approx(expected, rel=0.02)
    assert directory_bytes(int4_dir) < 0.3 * directory_bytes(float_dir)


def quantizer_free_linears(model):
    from forge.models.quantization import quantizable_linears

    return list(quantizable_linears(model))


def test_a_missing_weight_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    quantizer = Int4QAT(group_size=32)
    quantizer.save(quantizer.convert(quantizer.prepare(tiny_llama())), str(tmp_path))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.norm.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError, match="model.norm.weight"):
        load_quantized(tmp_path)
