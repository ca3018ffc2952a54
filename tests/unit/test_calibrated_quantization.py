"""GPTQ and AWQ int4 (llmcompressor in .venv-quant) on a tiny real Llama: the int4 layers Forge
builds dequantize to exactly the weights llmcompressor wrote, hold at most 16 levels per group, and
GPTQ reproduces the float model's outputs on its calibration inputs better than round-to-nearest
(the error correction is what GPTQ adds); bad settings are config problems."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from forge.models.calibrated_quantization import (  # noqa: E402
    DEFAULT_PYTHON,
    Int4AWQ,
    Int4GPTQ,
    calibration_ids,
)
from forge.models.int4_checkpoint import quantized_layers  # noqa: E402
from forge.models.quantization import Int4RTN, quantizable_linears  # noqa: E402

needs_env = pytest.mark.skipif(not DEFAULT_PYTHON.is_file(), reason="no .venv-quant: bash .ci/install_quant.sh")


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def calibration(n: int = 16, length: int = 48) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 128, (n, length), generator=g).tolist()


def output_error(model, reference, ids) -> float:
    x = torch.tensor(ids)
    with torch.no_grad():
        return float((model(x).logits - reference(x).logits).pow(2).mean())


@needs_env
def test_gptq_layers_are_llmcompressors_weights_on_16_levels_and_beat_rtn_on_the_calibration_set():
    ids = calibration()
    gptq = Int4GPTQ(group_size=32, calibration_samples=16).convert(tiny_llama(), ids)
    rtn = Int4RTN(group_size=32).convert(tiny_llama())
    layers = quantized_layers(gptq)
    assert sorted(layers) == sorted(name for name, _ in quantizable_linears(tiny_llama()))
    for weight in layers.values():
        levels = weight.qdata.reshape(weight.shape[0], -1, 32)
        assert int(levels.min()) >= -8 and int(levels.max()) <= 7
        assert max(len(torch.unique(g)) for row in levels for g in row) <= 16
        assert bool((weight.zero_point == 0).all())  # symmetric, as torchao's int4 weight-only grid
    # GPTQ moved weights off their nearest level (error feedback); RTN did not
    assert any(not torch.equal(layers[n].qdata, quantized_layers(rtn)[n].qdata) for n in layers)
    reference = tiny_llama()
    assert output_error(gptq, reference, ids) < output_error(rtn, reference, ids)


@needs_env
def test_int4_layers_dequantize_to_exactly_what_llmcompressor_wrote(tmp_path):
    import json
    import subprocess

    from safetensors.torch import load_file

    from forge.models.calibrated_quantization import WORKER, _int4_model, _read_state

    ids = calibration(8)
    tiny_llama().save_pretrained(str(tmp_path / "float"))
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps({"input_ids": row}) + "\n" for row in ids))
    subprocess.run([str(DEFAULT_PYTHON), str(WORKER), "--model", str(tmp_path / "float"), "--calibration",
                    str(tmp_path / "ids.jsonl"), "--out", str(tmp_path / "q"), "--method", "gptq",
                    "--group-size", "32"], check=True, capture_output=True)
    written = load_file(str(next((tmp_path / "q").glob("*.safetensors"))))
    # the same output converted (two GPTQ runs need not agree bit for bit: CPU threads sum in any order)
    ours = _int4_model(tiny_llama(), _read_state(tmp_path / "q"), Int4GPTQ(group_size=32, calibration_samples=8))
    assert sorted(quantized_layers(ours)) == sorted(name for name, _ in quantizable_linears(tiny_llama()))
    for name, weight in quantized_layers(ours).items():
        assert torch.allclose(weight.dequantize(), written[f"{name}.weight"], atol=1e-6, rtol=0)


@needs_env
def test_awq_rescales_the_norms_and_quantizes_every_layer():
    ids = calibration()
    awq = Int4AWQ(group_size=32, calibration_samples=16).convert(tiny_llama(), ids)
    reference = tiny_llama()
    assert len(quantized_layers(awq)) == len(list(quantizable_linears(reference)))
    norm = "model.layers.0.input_layernorm.weight"
    assert not torch.equal(awq.state_dict()[norm], reference.state_dict()[norm])  # AWQ's smoothing scales
    assert output_error(awq, reference, ids) < 1.0


def test_calibration_ids_are_a_seeded_sample_of_the_training_split_as_collated_cut_to_length():
    from forge.data.causal_collate import CausalLMCollator

    train = [{"prompt_input_ids": list(range(i, i + 3)), "completion_input_ids": [90 + i, 99]} for i in range(20)]
    collate = CausalLMCollator(0)
    first = calibration_ids(train, collate, 5, 4, seed=3)
    assert first == calibration_ids(train, collate, 5, 4, seed=3) != calibration_ids(train, collate, 5, 4, seed=4)
    whole = calibration_ids(train, collate, 20, 99, seed=3)
    assert sorted(whole) == sorted([*range(i, i + 3), 90 + i, 99] for i in range(20))  # prompt + target
    assert all(row == full[:4] for row, full in zip(first, whole))
    with pytest.raises(ValueError, match="training split is empty"):
        calibration_ids([], collate, 5, 4, seed=0)


def test_calibrated_settings_that_cannot_work_are_config_problems(tmp_path):
    from transformers import BertConfig, BertModel

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    llama = tiny_llama()
    cases = {
        "calibration_samples": Int4GPTQ(calibration_samples=0),
        "calibration_file": Int4GPTQ(calibration_file=str(empty)),
        "scheme": Int4AWQ(scheme="int8_dynamic_act_int4_weight"),
        "python": Int4GPTQ(python=str(tmp_path / "no-python")),
    }
    for key, quantizer in cases.items():
        problems = quantizer.problems(llama, "q")
        assert any(p.key == f"q.{key}" for p in problems), (key, problems)
    missing = Int4GPTQ(calibration_file=str(tmp_path / "absent.txt")).problems(llama, "q")
    assert [p.message for p in missing if p.key == "q.calibration_file"] == ["does not exist."]
    encoder = BertModel(BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128))
    assert any("decoder language models only" in p.message for p in Int4GPTQ().problems(encoder, "q"))
