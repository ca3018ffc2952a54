"""`model.student.quantization` as a user writes it: the dotted key selects the config group, the
composed node builds the quantizer, and each setting that cannot work is a config problem found on
the student's layers built without weights (a GPT-2 student has no nn.Linear: its Conv1D layers are
not torchao's to quantize)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torchao")

from forge.config.errors import ConfigError  # noqa: E402
from forge.config.launcher import dotted_group_overrides  # noqa: E402
from tests.conftest import SHARED_DATA, compose_config  # noqa: E402

SMOLLM = ["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "logger=none"]


def test_the_dotted_key_selects_the_group_and_other_overrides_are_left_alone():
    argv = ["model.student.quantization=int4_qat", "model.student.quantization.group_size=64",
            "+model.student.quantization=int4_qat", "model.student.lora.enabled=true", "task=sst2",
            "model.student.quantization=null"]
    assert dotted_group_overrides(argv) == [
        "model/student/quantization=int4_qat", "model.student.quantization.group_size=64",
        "+model/student/quantization=int4_qat", "model.student.lora.enabled=true", "task=sst2",
        "model/student/quantization=null"]


def test_the_composed_option_builds_the_quantizer_with_its_settings():
    from forge.models.quantization import Int4QAT
    from forge.plan import build_plan

    cfg = compose_config([*SMOLLM, *dotted_group_overrides(["model.student.quantization=int4_qat"]),
                          "model.student.quantization.group_size=64"])
    assert cfg.model.student.quantization.scheme == "int4_weight_only"
    plan = build_plan(cfg)
    assert plan.quantizer == Int4QAT(group_size=64, scheme="int4_weight_only")
    assert build_plan(compose_config(SMOLLM)).quantizer is None


def problems_of(*overrides: str) -> str:
    from forge.plan import build_plan

    with pytest.raises(ConfigError) as err:
        build_plan(compose_config([*SMOLLM, "model/student/quantization=int4_qat", *overrides]))
    return str(err.value)


def test_a_group_size_that_does_not_divide_the_hidden_size_names_the_layers():
    text = problems_of("model.student.quantization.group_size=128")  # SmolLM2's hidden size is 576
    assert "model.student.quantization.group_size" in text and "q_proj (576)" in text and "128" in text


def test_a_cuda_only_scheme_on_cpu_says_the_fix():
    text = problems_of("model.student.quantization.scheme=int4_tinygemm")
    assert "CUDA" in text and "scheme=int4_weight_only" in text


def test_an_unknown_scheme_lists_the_valid_ones():
    text = problems_of("model.student.quantization.scheme=nf4")
    assert "nf4" in text and "int8_dynamic_act_int4_weight" in text


def test_a_student_with_no_linear_layer_is_refused(tmp_path):
    from transformers import GPT2Config

    gpt2 = tmp_path / "gpt2"
    GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100).save_pretrained(gpt2)
    (gpt2 / "tokenizer_config.json").write_text(json.dumps({}))
    text = problems_of("model.student.source=local", f"model.student.name_or_path={gpt2}",
                       "model.student.init_layers=null")
    assert "finds no linear layer" in text and "GPT2LMHeadModel" in text


def test_quantization_with_fsdp_is_refused():
    text = problems_of("distributed=fsdp")
    assert "distributed=fsdp" in text and "distributed=ddp" in text


def test_ptq_without_a_quantization_says_which_to_choose():
    from forge.plan import build_plan

    with pytest.raises(ConfigError) as err:
        build_plan(compose_config([*SMOLLM, "mode=ptq"]))
    assert "model.student.quantization" in str(err.value) and "int4_rtn" in str(err.value)


def test_gptq_without_calibration_data_is_refused_before_anything_loads(tmp_path):
    from forge.plan import build_plan

    for override, said in [("model.student.quantization.calibration_samples=0", "needs calibration data"),
                           (f"model.student.quantization.calibration_file={tmp_path / 'none.txt'}", "does not exist")]:
        with pytest.raises(ConfigError) as err:
            build_plan(compose_config([*SMOLLM, "mode=ptq", "model/student/quantization=int4_gptq", override]))
        assert said in str(err.value) and "model.student.quantization.calibration" in str(err.value)
