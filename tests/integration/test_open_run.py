"""`forge.open_run` on real run directories of each task family: finished, co-trained and
interrupted classification runs, and a decoder (translation) run. Every rebuilt piece is checked
against what the run itself wrote: the student and teacher loaded back score exactly what
metrics.json says they scored, and a checkpoint's student equals the final one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.integration.stopping import signal_when_sealed
from tests.conftest import SHARED_DATA, TINY_RUN, compose_config

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, name: str, *extra: str) -> Path:
    import forge

    run_dir = tmp_path / name
    forge.run(compose_config([*TINY_RUN, "logger=none", f"run_dir={run_dir}", *extra]))
    return run_dir


def _logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits


def test_a_finished_kd_run_with_a_cached_teacher_and_lora(tmp_path):
    import forge

    run_dir = _run(tmp_path, "kd", "mode=kd", "loss=combined_fr", "teacher_strategy=frozen_sft",
                   "model.student.lora.enabled=true")
    run = forge.open_run(run_dir)
    assert run.status == "finished" and run.config.mode.name == "kd"
    assert run.metrics == __import__("json").loads((run_dir / "metrics.json").read_text())
    data = run.data()
    assert len(data.train) == 32 and len(data.eval_sets["validation"]) == 16
    assert run.score(run.student(), data) == run.metrics["post"]["student"]
    # the last checkpoint's LoRA student, rebuilt by the recipe, gives the merged final model's logits
    batch = data.evaluation_collator([data.eval_sets["validation"][i] for i in range(4)])
    last = run.student(checkpoint=3)
    torch.testing.assert_close(_logits(last, batch), _logits(run.student(), batch), atol=1e-5, rtol=1e-5)
    # the shared fine-tuned teacher of the teacher-signal cache, as the run scored it
    assert run.metadata["teacher"]["kind"] == "cached"
    assert run.score(run.teacher(), data) == run.metrics["pre"]["teacher"]


def test_a_co_trained_teacher_is_loaded_as_training_left_it(tmp_path):
    import forge

    run = forge.open_run(_run(tmp_path, "cotrain", "mode=kd", "loss=combined_fa", "teacher_strategy=cotrain_base"))
    assert (run.layout.teacher_final / "model.safetensors").is_file()
    assert run.score(run.teacher()) == run.metrics["post"]["teacher"]


def test_an_interrupted_run_gives_its_checkpoint_student(tmp_path):
    import forge
    from forge.runtime.signals import RunInterrupted
    from safetensors.torch import load_file

    run_dir = tmp_path / "stopped"

    with signal_when_sealed(run_dir / "checkpoint-2"), pytest.raises(RunInterrupted):
        forge.run(compose_config([*TINY_RUN, "logger=none", f"run_dir={run_dir}", "mode=sft",
                                  "trainer.max_steps=8", "signals.on_signal=exit"]))
    run = forge.open_run(run_dir)
    assert run.status == "interrupted" and run.metrics is None and run.pre_metrics is not None
    with pytest.raises(forge.run_view.RunNotReadable, match="checkpoint="):
        run.student()
    newest = run.checkpoints()[0]
    student = run.student(checkpoint=newest)
    saved = load_file(str(newest / "model.safetensors"))
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(student.state_dict()[name], saved[name])
    assert run.teacher() is None


def test_a_decoder_run_is_rebuilt_with_its_prompts_and_teacher(tmp_path):
    import forge

    run_dir = tmp_path / "gkd"
    forge.run(compose_config([
        "task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "logger=none",
        "task.max_train_samples=4", "task.max_eval_samples=2", "task.max_length=48", "task.max_new_tokens=4",
        "task.system_prompt=Translate.", "trainer.max_steps=1", "trainer.per_device_train_batch_size=2",
        "trainer.per_device_eval_batch_size=2", "trainer.save_steps=1", "mode=gkd", "mode.trainer.lmbda=0",
        "teacher_strategy=context_baking", f"run_dir={run_dir}"]))
    run = forge.open_run(run_dir)
    data = run.data()
    assert "teacher_prompt_input_ids" in data.train.column_names  # the context the teacher saw
    assert run.score(run.student(), data) == run.metrics["post"]["student"]
    assert run.score(run.teacher(), data) == run.metrics["pre"]["teacher"]
    assert run.metadata["teacher"]["kind"] == "live" and run.metadata["teacher"]["backend"]["backend"] == "hf"


def test_a_path_that_is_not_a_run_is_refused(tmp_path):
    import forge

    with pytest.raises(forge.run_view.RunNotReadable, match="not a run directory"):
        forge.open_run(tmp_path)
