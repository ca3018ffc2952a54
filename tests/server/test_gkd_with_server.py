"""GKD end to end with the teacher behind the real OpenAI-compatible server (the judged command's
`teacher_backend=openai`), combined with context baking and on-policy sampling."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_decoder_runs import DECODER_TINY, logged

pytestmark = [pytest.mark.server, pytest.mark.integration]


def test_gkd_run_against_the_server_with_context_baking(llama_server, tmp_path, monkeypatch):
    import forge
    from tests.conftest import compose_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-forge-test-not-a-real-key")
    run_dir = tmp_path / "run"
    cfg = compose_config([*DECODER_TINY, f"run_dir={run_dir}", "mode=gkd", "teacher_backend=openai",
                          f"teacher_backend.base_url={llama_server}", "mode.trainer.top_k=8",
                          "teacher_strategy=context_baking", "mode.trainer.lmbda=0.5",
                          "mode.trainer.max_new_tokens=6"])
    metrics = forge.run(cfg)
    assert json.loads((run_dir / "run_metadata.json").read_text())["status"] == "finished"
    steps = logged(run_dir)
    assert len(steps) == 2 and all(e["loss/jsd"] > 0 for e in steps)
    assert "teacher" not in metrics["post"]  # a remote teacher is not re-scored by Forge
    assert 0.0 <= metrics["post"]["student"]["validation/bleu"] <= 100.0
    log_text = (run_dir / "output.log").read_text()
    assert "'backend': 'openai'" in log_text
    for path in run_dir.rglob("*"):  # the key from the environment is in no file the run wrote
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert b"sk-forge-test-not-a-real-key" not in path.read_bytes(), path


def test_a_served_teacher_fills_the_top_k_store_once_for_two_beta_arms(llama_server, tmp_path, monkeypatch):
    """The judged path: GKD off-policy on Europarl with teacher.cache=auto against the llama.cpp
    server, then a second arm with another β that reads the same store without asking the server."""
    import forge
    from tests.conftest import compose_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-forge-test-not-a-real-key")
    reports = []
    for beta in ("0.0", "1.0"):
        run_dir = tmp_path / f"beta{beta}"
        forge.run(compose_config([*DECODER_TINY, f"run_dir={run_dir}", "mode=gkd", "teacher_backend=openai",
                                  f"teacher_backend.base_url={llama_server}", "mode.trainer.top_k=8",
                                  "mode.trainer.lmbda=0.0", f"mode.trainer.beta={beta}",
                                  f"teacher.cache_root={tmp_path / 'cache'}"]))
        reports.append(json.loads((run_dir / "run_metadata.json").read_text())["teacher_cache"])
        assert all(e["loss/teacher_stored"] == 1.0 and e["loss/jsd"] > 0 for e in logged(run_dir))
    assert reports[0]["built"] == ["topk_ids", "topk_logprobs"] and reports[1]["built"] == []
    assert reports[0]["dir"] == reports[1]["dir"] and reports[0]["k"] == 8
    manifest = json.loads((tmp_path / "cache" / "signals" / reports[0]["dir"].rsplit("/", 1)[1] / "manifest.json").read_text())
    assert manifest["parts"]["teacher"]["backend"] == "openai" and len(manifest["builds"]) == 1
    assert "sk-forge-test" not in json.dumps(manifest)
