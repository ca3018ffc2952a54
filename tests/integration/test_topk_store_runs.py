"""GKD on Europarl with the packaged SmolLM2 pair, reading the teacher from the cache's top-k store:
the same run as with the live top-k teacher step for step, one store for a β sweep, on-policy
batches scored live, and the config answers for what the store cannot serve."""

from __future__ import annotations

import json

import pytest

from forge.config.errors import ConfigError
from forge.trainers.gkd import on_policy_for
from tests.integration.test_decoder_runs import assert_finished_decoder_run, logged, run

pytestmark = pytest.mark.integration

GKD_TOPK = ["mode=gkd", "mode.trainer.top_k=16", "mode.trainer.lmbda=0.0"]

#: float16 keeps a log-probability x to |x|·2⁻¹¹ (tested on the rows in tests/unit/test_topk_store.py);
#: over 6 steps of these runs the loss differed by at most 6e-5 relative and the gradient norm by 5e-4
STEP_RTOL = 1e-3


def _cache(tmp_path) -> str:
    return f"teacher.cache_root={tmp_path / 'cache'}"


def _teacher_cache(run_dir) -> dict:
    return json.loads((run_dir / "run_metadata.json").read_text())["teacher_cache"]


def test_a_run_from_the_store_equals_the_live_top_k_run_step_for_step(tmp_path):
    live_dir, live = run(tmp_path / "live", *GKD_TOPK, "teacher.cache=off")
    store_dir, stored = run(tmp_path / "store", *GKD_TOPK, "teacher.cache=on", _cache(tmp_path))
    assert_finished_decoder_run(store_dir, stored)
    live_steps, store_steps = logged(live_dir), logged(store_dir)
    assert [e["loss/teacher_stored"] for e in store_steps] == [1.0, 1.0]
    assert [e["loss/teacher_stored"] for e in live_steps] == [0.0, 0.0]
    for a, b in zip(live_steps, store_steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=STEP_RTOL) and a["loss"] > 0
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=10 * STEP_RTOL)
    report = _teacher_cache(store_dir)
    assert report["used"] and report["kind"] == "topk" and report["k"] == 16 and report["id_dtype"] == "uint16"
    assert report["bytes_per_token"] == pytest.approx(64, abs=8)  # 16 × (2 + 2) bytes, plus the .npy headers
    assert _teacher_cache(live_dir) == {"used": False, "reason": "teacher.cache=off"}


def test_a_second_beta_arm_reuses_the_store_and_on_policy_batches_go_live(tmp_path):
    first_dir, _ = run(tmp_path / "beta0", *GKD_TOPK, "mode.trainer.beta=0.0", _cache(tmp_path))
    assert _teacher_cache(first_dir)["built"] == ["topk_ids", "topk_logprobs"]
    steps = 4
    second_dir, _ = run(tmp_path / "beta1", *GKD_TOPK, "mode.trainer.beta=1.0", "mode.trainer.lmbda=0.5",
                        f"trainer.max_steps={steps}", _cache(tmp_path))
    report = _teacher_cache(second_dir)
    assert report["reused"] == ["topk_ids", "topk_logprobs"] and report["built"] == []
    assert report["dir"] == _teacher_cache(first_dir)["dir"]
    logged_steps = logged(second_dir)
    coins = [on_policy_for(42, step, 0, 0.5) for step in range(steps)]
    assert [e["loss/on_policy"] for e in logged_steps] == [float(c) for c in coins]
    assert [e["loss/teacher_stored"] for e in logged_steps] == [float(not c) for c in coins]
    if any(coins):
        assert "scored by the live teacher" in (second_dir / "output.log").read_text()


def test_dense_gkd_is_not_served_from_the_store_and_says_why(tmp_path):
    run_dir, _ = run(tmp_path / "dense", "mode=gkd", "mode.trainer.lmbda=0.0", _cache(tmp_path))
    report = _teacher_cache(run_dir)
    assert report["used"] is False and "dense logits" in report["reason"] and "top_k=20" in report["reason"]
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "dense_on", "mode=gkd", "mode.trainer.lmbda=0.0", "teacher.cache=on", _cache(tmp_path))
    assert "teacher.cache" in str(err.value) and "mode.trainer.top_k" in str(err.value)


def test_a_32_bit_store_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "f32", *GKD_TOPK, "teacher.cache_dtype=float32", _cache(tmp_path))
    text = str(err.value)
    assert "teacher.cache_dtype" in text and "16 bits" in text and "float16, bfloat16" in text
    assert not (tmp_path / "f32" / "run").exists()


def test_a_k_above_the_servers_limit_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "k", "mode=gkd", "mode.trainer.lmbda=0.0", "mode.trainer.top_k=32", "teacher_backend=openai",
            "teacher_backend.max_k=20", "teacher.cache=on", _cache(tmp_path))
    text = str(err.value)
    assert "mode.trainer.top_k" in text and "(20)" in text and "top_k<=20" in text
    assert not (tmp_path / "cache").exists()


def test_a_tail_bucket_run_from_the_store_equals_the_live_one(tmp_path):
    tail = [*GKD_TOPK, "mode.trainer.tail_bucket=true", "mode.trainer.temperature=1.0"]
    live_dir, _ = run(tmp_path / "live", *tail, "teacher.cache=off")
    store_dir, _ = run(tmp_path / "store", *tail, "teacher.cache=on", _cache(tmp_path))
    for a, b in zip(logged(live_dir), logged(store_dir)):
        assert b["loss"] == pytest.approx(a["loss"], rel=STEP_RTOL) and a["loss"] > 0
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=10 * STEP_RTOL)
    report = _teacher_cache(store_dir)
    assert report["tail"] and report["built"] == ["topk_ids", "topk_logprobs", "topk_tail"]
    assert report["bytes_per_token"] == pytest.approx(66, abs=8)  # 16 × (2 + 2) + 2 bytes


def test_seq_kd_trains_on_the_teachers_stored_completions_and_a_second_arm_reuses_them(tmp_path):
    seq = [*GKD_TOPK, "mode.trainer.seq_kd=true", "mode.trainer.seq_kd_completions=stored",
           "mode.trainer.max_new_tokens=6", _cache(tmp_path)]
    first_dir, _ = run(tmp_path / "beta0", *seq, "mode.trainer.beta=0.0")
    first = _teacher_cache(first_dir)
    assert first["teacher_completions"]["built"] and first["teacher_completions"]["max_new_tokens"] == 6
    assert first["built"] == ["topk_ids", "topk_logprobs"]
    steps = logged(first_dir)
    assert [e["loss/teacher_stored"] for e in steps] == [1.0, 1.0]
    assert all(0 < e["loss/completion_tokens"] <= 6 for e in steps)  # the teacher's text, not Europarl's
    assert "Training on the teacher's stored completions" in (first_dir / "output.log").read_text()
    second_dir, _ = run(tmp_path / "beta1", *seq, "mode.trainer.beta=1.0")
    second = _teacher_cache(second_dir)
    assert not second["teacher_completions"]["built"] and second["reused"] == ["topk_ids", "topk_logprobs"]
    assert second["teacher_completions"]["dir"] == first["teacher_completions"]["dir"] and second["dir"] == first["dir"]
