"""The int4 QAT quantizer (torchao) on real small layers and a tiny Llama: the fake-quantized forward
is the forward of the weights it will convert to, those weights hold at most 16 levels per group
within half a step of the float weights, LoRA merged before convert equals converting the merged
float weights, and bad settings are config problems."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from forge.models.quantization import Int4QAT, quantizable_linears  # noqa: E402


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("scheme", ["int4_weight_only", "int8_dynamic_act_int4_weight"])
def test_the_fake_quantized_forward_is_the_forward_of_the_converted_weights(scheme):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(64, 32))
    quantizer = Int4QAT(group_size=32, scheme=scheme)
    quantizer.prepare(layer)
    x = torch.randn(5, 64)
    fake = layer(x).detach()
    quantizer.convert(layer)
    assert torch.allclose(layer(x), fake, atol=1e-6)


def test_converted_weights_have_at_most_16_levels_per_group_within_half_a_step():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(128, 16))
    w = layer[0].weight.detach().clone()
    Int4QAT(group_size=32).convert(Int4QAT(group_size=32).prepare(layer))
    q = layer[0].weight
    levels = q.qdata.reshape(16, 4, 32)
    assert max(len(torch.unique(levels[r, g])) for r in range(16) for g in range(4)) <= 16
    assert int(levels.min()) >= -8 and int(levels.max()) <= 7
    step = q.scale.reshape(16, 4, 1).expand(16, 4, 32).reshape(16, 128)
    assert bool(((q.dequantize() - w).abs() <= step / 2 + 1e-6).all())  # rounding, never clipping, here


def test_lora_merged_before_convert_equals_converting_the_merged_float_weights():
    from peft import LoraConfig, get_peft_model

    quantizer = Int4QAT(group_size=32)
    student = get_peft_model(quantizer.prepare(tiny_llama()),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    merged = student.merge_and_unload()
    float_copy = tiny_llama()
    float_copy.load_state_dict({k: v for k, v in merged.state_dict().items()}, strict=True)
    quantizer.convert(merged)
    quantizer.convert(quantizer.prepare(float_copy))
    for (name, a), (_, b) in zip(quantizable_linears(merged), quantizable_linears(float_copy)):
        assert torch.equal(a.weight.qdata, b.weight.qdata), name
        assert torch.equal(a.weight.scale, b.weight.scale), name
    ids = torch.tensor([[1, 5, 9, 2]])
    assert torch.allclose(merged(input_ids=ids).logits, float_copy(input_ids=ids).logits, atol=1e-5)


def test_every_block_linear_is_quantized_and_the_tied_head_is_not():
    model = Int4QAT(group_size=32).prepare(tiny_llama())
    names = [name for name, _ in quantizable_linears(model)]
    assert len(names) == 2 * 7 and not any(n.endswith("lm_head") for n in names)  # q,k,v,o,gate,up,down per block
    assert all(type(layer).__name__ == "FakeQuantizedLinear" for _, layer in quantizable_linears(model))
    assert type(model.lm_head).__name__ == "Linear"


def test_bad_settings_are_config_problems_naming_the_key():
    model = tiny_llama()
    uneven = Int4QAT(group_size=48).problems(model)
    assert [p.key for p in uneven] == ["model.student.quantization.group_size"] and "q_proj (64)" in uneven[0].message
    cuda = Int4QAT(scheme="int4_tinygemm").problems(model)
    if not torch.cuda.is_available():
        assert cuda[0].key == "model.student.quantization.scheme" and "int4_weight_only" in cuda[0].fix
    assert "no linear layer" in Int4QAT().problems(torch.nn.Sequential(torch.nn.Embedding(10, 8)))[0].message
    assert "valid: int4_weight_only" in Int4QAT(scheme="nf4").problems(model)[0].fix


@pytest.mark.parametrize("scheme", ["int4_weight_only", "int8_dynamic_act_int4_weight"])
def test_rtn_post_training_quantization_rounds_exactly_as_qat_convert(scheme):
    """PTQ-RTN and QAT share their numerics: torchao's PTQ of the float weights gives the same int4
    levels and scales as fake-quantizing them and converting (what a QAT run with no training does)."""
    from forge.models.quantization import Int4RTN

    rtn, qat = Int4RTN(group_size=32, scheme=scheme), Int4QAT(group_size=32, scheme=scheme)
    a = rtn.convert(rtn.prepare(tiny_llama()))
    b = qat.convert(qat.prepare(tiny_llama()))
    assert type(a.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # prepare left the layers alone
    for (name, la), (_, lb) in zip(quantizable_linears(a), quantizable_linears(b)):
        assert torch.equal(la.weight.qdata, lb.weight.qdata) and torch.equal(la.weight.scale, lb.weight.scale), name
    ids = torch.randint(0, 64, (1, 9))
    assert torch.equal(a(ids).logits, b(ids).logits)
    assert torch.equal(rtn.convert(a)(ids).logits, b(ids).logits)  # converting twice changes nothing
