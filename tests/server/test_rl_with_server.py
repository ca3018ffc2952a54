"""GRPO with the teacher behind the real OpenAI-compatible server (the judged command's
`teacher_backend=openai`): the teacher_logprob reward and the KL toward the teacher, both read
through the server's top-k view."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_rl_runs import RL_TINY

pytestmark = [pytest.mark.server, pytest.mark.integration]


def test_grpo_against_the_server_with_its_reward_and_kl(llama_server, tmp_path, monkeypatch):
    import forge
    from tests.conftest import compose_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-forge-test-not-a-real-key")
    run_dir = tmp_path / "run"
    cfg = compose_config([*RL_TINY, f"run_dir={run_dir}", "teacher_backend=openai",
                          f"teacher_backend.base_url={llama_server}", "rl.teacher_top_k=8",
                          "reward=[chrf,teacher_logprob]", "rl.kl_to=teacher", "rl.beta=0.04"])
    metrics = forge.run(cfg)
    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    steps = [e for e in history if "reward" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["rewards/teacher_logprob/mean"] < 0.0 and entry["kl"] >= 0.0
        assert 0.0 <= entry["kl/teacher_outside_topk"] <= 1.0
    assert "teacher" not in metrics["post"]  # a remote teacher is not re-scored by Forge
    for path in run_dir.rglob("*"):  # the key from the environment is in no file the run wrote
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert b"sk-forge-test-not-a-real-key" not in path.read_bytes(), path
