"""`python -m forge.quantize`: a finished run's final/ quantized and scored on the run's own task
settings (so the float model's pre scores are the run's post scores), and bad command lines
refused with the fix, before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.quantize import main
from tests.conftest import compose_config
from tests.integration.test_decoder_runs import DECODER_TINY

pytestmark = pytest.mark.integration


def test_a_run_directorys_final_model_is_quantized_on_the_runs_own_task(tmp_path, capsys):
    import json

    import forge

    source = tmp_path / "sft"
    trained = forge.run(compose_config([*DECODER_TINY, "mode=sft", "task.perplexity.enabled=true",
                                        "task.perplexity.max_tokens=256", "task.perplexity.window=128",
                                        "task.perplexity.stride=64", f"run_dir={source}"]))
    out = tmp_path / "rtn"
    assert main([str(source), "method=rtn", f"run_dir={out}", "logger=none"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pre"]["student"] == pytest.approx(trained["post"]["student"], rel=1e-4)
    assert metrics["final"]["quantization"]["method"] == "int4_rtn"
    assert "validation/perplexity" in metrics["post"]["student"]  # the run's perplexity settings came along
    assert "(int4_rtn); final/" in capsys.readouterr().out


@pytest.mark.parametrize("argv, said", [
    (["method=rtn"], "exactly one model or run directory"),
    (["{tmp}", "method=int3"], "is not one of: rtn, gptq, awq"),
    (["{tmp}/absent", "method=rtn"], "is not a directory"),
    (["{tmp}", "method=gptq"], "neither config.yaml"),
    (["{model}", "method=rtn"], "say which task scores it"),
])
def test_bad_command_lines_exit_2_with_the_fix(tmp_path, capsys, argv, said):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(model)) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert said in err and "usage: python -m forge.quantize" in err or "task=europarl_en_fr" in err
    assert not (Path(tmp_path) / "outputs").exists()


def test_a_qat_runs_ptq_baseline_starts_from_the_float_student_that_run_started_from(tmp_path, capsys):
    """The final/ of a QAT run is already int4: the command quantizes the run's initial float student
    instead, so its pre scores are that run's float-student scores (pre.student_float)."""
    import json

    import forge

    source = tmp_path / "qat"
    trained = forge.run(compose_config([*DECODER_TINY, "mode=sft", "model/student/quantization=int4_qat",
                                        f"run_dir={source}"]))
    out = tmp_path / "rtn"
    assert main([str(source), "method=rtn", f"run_dir={out}", "logger=none"]) == 0
    assert "already int4" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pre"]["student"] == pytest.approx(trained["pre"]["student_float"], rel=1e-6)
    assert metrics["post"]["student"] == pytest.approx(trained["pre"]["student"], rel=1e-6)  # RTN = QAT's untrained rounding
