"""`mode=kd` on Europarl with a response loss over the teacher's top-k view (`loss.top_k`): read from
the cache's top-k store it is the same run as with the live teacher step for step, a GKD arm's store
serves it, and losses that compare raw logits refuse a top-k view before anything loads."""

from __future__ import annotations

import pytest

from forge.config.errors import ConfigError
from tests.integration.test_decoder_runs import assert_finished_decoder_run, logged, run
from tests.integration.test_topk_store_runs import GKD_TOPK, STEP_RTOL, _cache, _teacher_cache

pytestmark = pytest.mark.integration

KD_TOPK = ["mode=kd", "teacher_strategy=frozen_base", "loss=response_kl", "loss.top_k=16"]


def test_kd_from_the_store_equals_kd_with_the_live_top_k_teacher_step_for_step(tmp_path):
    live_dir, _ = run(tmp_path / "live", *KD_TOPK, "teacher.cache=off")
    store_dir, stored = run(tmp_path / "store", *KD_TOPK, "teacher.cache=on", _cache(tmp_path))
    assert_finished_decoder_run(store_dir, stored)
    live_steps, store_steps = logged(live_dir), logged(store_dir)
    assert len(live_steps) == len(store_steps) == 2
    for a, b in zip(live_steps, store_steps):
        assert a["loss/response"] > 0 and a["loss/ce"] > 0
        assert b["loss/response"] == pytest.approx(a["loss/response"], rel=STEP_RTOL)
        assert b["loss"] == pytest.approx(a["loss"], rel=STEP_RTOL)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=10 * STEP_RTOL)
    report = _teacher_cache(store_dir)
    assert report["used"] and report["kind"] == "topk" and report["k"] == 16


def test_a_gkd_arm_and_a_kd_arm_share_one_store(tmp_path):
    gkd_dir, _ = run(tmp_path / "gkd", *GKD_TOPK, _cache(tmp_path))
    kd_dir, _ = run(tmp_path / "kd", *KD_TOPK, "loss=response_reverse_kl", _cache(tmp_path))
    gkd, kd = _teacher_cache(gkd_dir), _teacher_cache(kd_dir)
    assert gkd["built"] == ["topk_ids", "topk_logprobs"]
    assert kd["reused"] == ["topk_ids", "topk_logprobs"] and kd["built"] == [] and kd["dir"] == gkd["dir"]
    assert all(e["loss/response"] > 0 for e in logged(kd_dir))


def test_losses_on_raw_logits_refuse_a_top_k_view_and_dense_kd_says_how_to_store(tmp_path):
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "mse", "mode=kd", "teacher_strategy=frozen_base", "loss=response_mse", "loss.top_k=16", _cache(tmp_path))
    text = str(err.value)
    assert "loss.top_k" in text and "raw logits" in text and "response_kl" in text
    assert not (tmp_path / "mse" / "run").exists()
    with pytest.raises(ConfigError) as err:
        run(tmp_path / "dense", "mode=kd", "teacher_strategy=frozen_base", "loss=response_kl", "teacher.cache=on", _cache(tmp_path))
    assert "teacher.cache" in str(err.value) and "loss.top_k=20" in str(err.value)
