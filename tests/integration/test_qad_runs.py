"""Tiny real QAD runs: the packaged SmolLM2 student trained through torchao fake quantization in
every mode (gkd on- and off-policy, kd with LoRA, rl, sft), its final/ the real int4 model. The
int4 final/ scores exactly what the fake-quantized student scored at the end of training (greedy
generation through the same rounded weights), and a stopped run resumes to the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.integration.stopping import stop_then_resume
from tests.integration.test_decoder_runs import DECODER_TINY

pytestmark = pytest.mark.integration

INT4 = "model/student/quantization=int4_qat"


def run(run_dir: Path, *extra: str) -> dict:
    import forge

    return forge.run(compose_config([*DECODER_TINY, INT4, f"run_dir={run_dir}", *extra]))


def assert_int4_final(run_dir: Path, metrics: dict) -> None:
    """final/ holds 6 blocks x 7 int4 linears, recorded in metrics.json, and rescored through the
    run's own eval loop it gives the post-training student scores."""
    import forge
    from forge.models import load_final
    from forge.models.int4_checkpoint import quantized_layers

    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    final = load_final(run_dir / "final")
    assert len(quantized_layers(final)) == 42
    assert metrics["final"]["quantization"] == {"method": "int4_qat", "scheme": "int4_weight_only", "group_size": 32}
    int4 = sum(w.numel() for w in quantized_layers(final).values())
    float_rest = sum(t.numel() for k, t in final.state_dict().items() if k.removesuffix(".weight") not in
                     quantized_layers(final) and k != "lm_head.weight")  # the tied head is written once
    weights = (run_dir / "final" / "model.safetensors").stat().st_size
    assert weights == pytest.approx(4 * float_rest + int4 * (0.5 + 5 / 32), rel=0.01)  # fp32 rest, 4-bit linears
    assert weights < 4 * (float_rest + int4) - 3 * int4  # at least 3 bytes saved per quantized weight
    assert metrics["final"]["bytes"] > weights  # the whole directory: tokenizer and config too
    assert forge.open_run(run_dir).score(final) == pytest.approx(metrics["post"]["student"], abs=1e-9)
    assert_side_by_side(metrics)


def assert_side_by_side(metrics: dict) -> None:
    """The quantization block: the float student scored apart, the untrained fake-quantized student
    as the PTQ score, the run's int4 student, and the recovered fraction by its formula."""
    block, pre, post = metrics["quantization"], metrics["pre"], metrics["post"]["student"]
    assert block["fp_student"] == pre["student_float"] != pre["student"] == block["ptq_student"]
    assert block["fp_teacher"] == pre.get("teacher") and block["student"] == post
    for key, fraction in block["recovered_fraction"].items():
        ptq, fp = pre["student"][key], pre["student_float"][key]
        assert fraction == (None if ptq == fp else pytest.approx((ptq - post[key]) / (ptq - fp)))


def logged(run_dir: Path) -> list[dict]:
    return [e for e in json.loads((run_dir / "training_state.json").read_text())["log_history"] if "loss" in e]


def test_on_policy_qad_with_reverse_kl(tmp_path):
    run_dir = tmp_path / "run"
    metrics = run(run_dir, "mode=gkd", "mode.trainer.lmbda=1.0", "mode.trainer.beta=1.0",
                  "mode.trainer.max_new_tokens=6", "task.perplexity.enabled=true", "task.perplexity.max_tokens=128",
                  "task.perplexity.window=64", "task.perplexity.stride=32")
    assert_int4_final(run_dir, metrics)  # the held-out perplexity included
    for who in ("teacher", "student"):
        assert metrics["post"][who]["validation/perplexity"] > 1
        assert metrics["post"][who]["validation/perplexity_tokens"] == 127
    assert [e["loss/on_policy"] for e in logged(run_dir)] == [1.0, 1.0]


def test_off_policy_kd_with_lora_merges_then_converts(tmp_path):
    run_dir = tmp_path / "run"
    metrics = run(run_dir, "mode=kd", "loss=combined_r", "teacher_strategy=frozen_base",
                  "model.student.lora.enabled=true", "trainer.learning_rate=1e-3")
    assert_int4_final(run_dir, metrics)
    assert all(e["loss/response"] > 0 for e in logged(run_dir))


@pytest.mark.slow
def test_rl_trains_the_fake_quantized_student(tmp_path):
    from tests.integration.test_rl_runs import RL_TINY, TOY

    run_dir = tmp_path / "run"
    extra = [a for a in RL_TINY if a not in DECODER_TINY]
    metrics = run(run_dir, *extra, TOY)
    assert_int4_final(run_dir, metrics)


@pytest.mark.slow
def test_a_stopped_qat_run_resumes_to_the_uninterrupted_run(tmp_path):
    """Fake quantization holds no state of its own (scales come from the weights each step), so the
    checkpoint's weights, optimizer and RNG are the whole run: the same losses, the same int4 final."""
    from forge.models import load_final

    config = ["mode=gkd", "mode.trainer.lmbda=0.0", "mode.trainer.beta=0.0", "trainer.max_steps=4",
              "trainer.save_steps=2"]
    reference, stopped = tmp_path / "uninterrupted", tmp_path / "stopped"
    expected = run(reference, *config)
    resumed = stop_then_resume(run, stopped, *config)
    want = {e["step"]: e["loss"] for e in logged(reference)}
    got = {e["step"]: e["loss"] for e in logged(stopped)}
    assert len(want) == 4 and all(got[step] == pytest.approx(loss, rel=1e-5) for step, loss in want.items())
    assert resumed["post"] == expected["post"]
    a, b = load_final(reference / "final").state_dict(), load_final(stopped / "final").state_dict()
    assert all(bool((a[k].dequantize() if hasattr(a[k], "dequantize") else a[k]).equal(
        b[k].dequantize() if hasattr(b[k], "dequantize") else b[k])) for k in a)


def test_ptq_rtn_scores_the_float_student_then_its_int4_rounding(tmp_path):
    """mode=ptq: pre is the float student, post the round-to-nearest int4 one (rescoring final/
    gives post exactly); rounding every linear layer to 16 levels costs held-out perplexity."""
    import forge
    from forge.models import load_final

    run_dir = tmp_path / "ptq"
    metrics = forge.run(compose_config([*DECODER_TINY, "model/student/quantization=int4_rtn", "mode=ptq",
                                        f"run_dir={run_dir}", "task.perplexity.enabled=true",
                                        "task.perplexity.max_tokens=256", "task.perplexity.window=128",
                                        "task.perplexity.stride=64"]))
    assert metrics["train"]["global_step"] == 0 and not list(run_dir.glob("checkpoint-*"))
    pre, post = metrics["pre"]["student"], metrics["post"]["student"]
    assert post["validation/perplexity"] > pre["validation/perplexity"] > 1
    assert metrics["final"]["quantization"]["method"] == "int4_rtn"
    assert forge.open_run(run_dir).score(load_final(run_dir / "final")) == pytest.approx(post, abs=1e-9)


@pytest.mark.skipif(not Path(__file__).resolve().parents[2].joinpath(".venv-quant/bin/python").is_file(),
                    reason="no .venv-quant: bash .ci/install_quant.sh")
def test_ptq_gptq_calibrates_on_the_training_split_and_saves_the_int4_model(tmp_path):
    """mode=ptq with GPTQ (llmcompressor in .venv-quant): final/ is Forge's int4 format, its recipe
    names the calibration, and rescoring it gives the run's post scores."""
    import forge
    from forge.models import load_final
    from forge.models.int4_checkpoint import quantized_layers

    run_dir = tmp_path / "gptq"
    metrics = forge.run(compose_config([*DECODER_TINY, "model/student/quantization=int4_gptq", "mode=ptq",
                                        "model.student.quantization.calibration_samples=8",
                                        "model.student.quantization.calibration_max_length=64",
                                        f"run_dir={run_dir}"]))
    recipe = metrics["final"]["quantization"]
    assert recipe["method"] == "int4_gptq" and recipe["calibration"] == "the task's training split"
    model = load_final(run_dir / "final")
    assert len(quantized_layers(model)) == 6 * 7
    assert forge.open_run(run_dir).score(model) == pytest.approx(metrics["post"]["student"], abs=1e-9)
