"""Real GRPO runs (mode=rl) on Europarl with the packaged SmolLM2 pair, through `forge.run`: a
teacher inside the loop (its reward and the KL pulled toward it), the reference model TRL loads,
a toy reward whose optimum is known, and a resume that equals the uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.integration.stopping import stop_then_resume
from tests.integration.test_decoder_runs import DECODER_TINY

pytestmark = pytest.mark.integration

RL_TINY = [*DECODER_TINY, "mode=rl", "rl.num_generations=4", "trainer.per_device_train_batch_size=4",
           "rl.max_completion_length=8"]
SIX_BLOCKS = "[0,6,12,18,24,29]"  # the student's blocks: a teacher built from them is the student
TOY = "+reward.toy={_target_:tests.integration.rl_toy.ContainsWord,name:toy,word:','}"


def run(run_dir: Path, *extra: str) -> dict:
    import forge

    return forge.run(compose_config([*RL_TINY, f"run_dir={run_dir}", *extra]))


def steps(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    return [e for e in history if "reward" in e]


def test_a_teacher_in_the_loop_scores_rewards_and_is_the_kl_target(tmp_path):
    """Teacher = student: the KL toward the teacher starts at zero; each reward is logged with its
    mean and std beside the weighted total."""
    run_dir = tmp_path / "run"
    metrics = run(run_dir, "reward=[chrf,teacher_logprob]", "rl.reward_weights=[1.0,0.1]", "rl.kl_to=teacher",
                  "rl.beta=0.04", f"model.teacher.init_layers={SIX_BLOCKS}")
    logged = steps(run_dir)
    assert len(logged) == 2
    first = logged[0]
    assert abs(first["kl"]) < 1e-4  # the policy is the teacher at the first step
    assert first["kl/teacher_outside_topk"] == 0.0  # dense teacher: every token is scored exactly
    for name in ("chrf", "teacher_logprob"):
        assert {f"rewards/{name}/mean", f"rewards/{name}/std"} <= set(first)
    assert 0.0 <= first["rewards/chrf/mean"] <= 1.0 and first["rewards/teacher_logprob/mean"] < 0.0
    total = first["rewards/chrf/mean"] + 0.1 * first["rewards/teacher_logprob/mean"]
    assert first["reward"] == pytest.approx(total, rel=1e-4, abs=1e-5)
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    assert meta["status"] == "finished" and [r["name"] for r in meta["mode"]["rewards"]] == ["chrf", "teacher_logprob"]
    # the teacher is the student: the same pre-training scores, and a transfer gap that reads them
    assert metrics["pre"]["teacher"] == metrics["pre"]["student"]
    assert metrics["transfer_gap"]["teacher_advantage"] == 0.0
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert (run_dir / "checkpoint-2" / "forge_checkpoint.json").is_file()
    assert not (run_dir / "README.md").exists()  # TRL's model card stays out of the run directory


def test_the_reference_is_the_student_as_the_run_starts(tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "run"
    run(run_dir, "reward=chrf", "rl.beta=0.04", "trainer.max_steps=1")
    assert abs(steps(run_dir)[0]["kl"]) < 1e-6  # reference = policy before the first update
    reference = AutoModelForCausalLM.from_pretrained(run_dir / "rl_reference")
    assert reference.config.num_hidden_layers == 6 and (run_dir / "rl_reference" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_grpo_raises_a_toy_reward_whose_optimum_is_known(tmp_path):
    """reward = 1 when the completion holds a comma: about half the untrained student's samples do,
    all of them at the optimum. The first step's 16 samples come from the untrained policy; a
    constant 1e-4 learning rate reaches the optimum within a few steps (seeds 0, 1 and 2: the first
    step scores 0.19-0.63, the last eight all 1.0), so the check holds on any CPU's sampling, not one seed's luck."""
    run_dir = tmp_path / "run"
    run(run_dir, TOY, "rl.num_generations=16", "trainer.per_device_train_batch_size=16", "trainer.max_steps=12",
        "trainer.learning_rate=1e-4", "trainer.lr_scheduler_type=constant", "trainer.save_steps=0",
        "task.max_train_samples=32")
    means = [e["rewards/toy/mean"] for e in steps(run_dir)]
    assert len(means) == 12
    last = sum(means[-4:]) / 4
    assert means[0] < 1.0 and last >= 0.9 and last > sum(means[:4]) / 4, means


@pytest.mark.slow
def test_a_stopped_lora_run_resumes_to_the_uninterrupted_run(tmp_path):
    """A signal after the step-2 checkpoint; the relaunch samples the same completions (generation
    is seeded per step), so every step's rewards, loss and gradient norm, and the final scores,
    equal the uninterrupted run's. The LoRA student samples through its adapters."""

    config = [TOY, "trainer.max_steps=4", "trainer.save_steps=2", "model.student.lora.enabled=true",
              "rl.beta=0.04", "trainer.learning_rate=1e-3"]
    reference, stopped = tmp_path / "uninterrupted", tmp_path / "stopped"
    expected = run(reference, *config)

    resumed = stop_then_resume(run, stopped, *config)
    want, got = steps(reference), steps(stopped)
    assert [e["step"] for e in got] == [1, 2, 3, 4] or [e["step"] for e in got][-2:] == [3, 4]
    by_step = {e["step"]: e for e in got}
    for entry in want:
        mine = by_step[entry["step"]]
        for key in ("rewards/toy/mean", "loss", "grad_norm", "kl"):
            assert mine[key] == pytest.approx(entry[key], rel=1e-4, abs=1e-6), (entry["step"], key)
    assert want[-1]["kl"] > 0  # the adapters moved the policy away from the base (the reference)
    assert resumed["post"] == expected["post"]


def test_a_reward_returning_nan_stops_the_run_naming_the_reward(tmp_path):
    from forge.rewards.base import RewardError

    run_dir = tmp_path / "run"
    with pytest.raises(RewardError, match="reward 'broken'.*NaN"):
        run(run_dir, "+reward.broken={_target_:tests.integration.rl_toy.NaNReward,name:broken}",
            "trainer.max_steps=1")
    meta = json.loads((run_dir / "run_metadata.json").read_text())
    assert meta["status"] == "failed" and not (run_dir / "metrics.json").exists()
