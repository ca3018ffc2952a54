"""A run is a function of its config, never of what the machine has cached.

The same config runs first with every cache cold (the packaged student not yet converted from
ONNX, no shared fine-tuned teacher, no teacher signals) and then warm. Before the fix, converting
the packaged student built a model from the global RNG and so moved the student's initialisation:
the untrained demo student scored 0.4850 cold and 0.5850 warm, and a FAR sweep's first arm on a
fresh node got a different student than the other arms of the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN, compose_config

pytestmark = pytest.mark.integration


def _losses(run_dir: Path) -> list[tuple[int, float, float]]:
    history = json.loads((run_dir / "training_state.json").read_text())["log_history"]
    return [(e["step"], e["loss"], e["loss/distill"]) for e in history if "loss" in e]


def test_cold_and_warm_caches_give_the_same_student_and_losses(tmp_path, monkeypatch):
    import forge
    from forge.models import packaged

    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "forge_cache"))
    monkeypatch.setenv("FORGE_TEACHER_CACHE_DIR", str(tmp_path / "teacher_cache"))
    packaged.clear_verification_cache()
    results = []
    for attempt in ("cold", "warm"):
        run_dir = tmp_path / attempt
        metrics = forge.run(compose_config([*TINY_RUN, "mode=kd", "loss=combined_far", "teacher_strategy=frozen_sft",
                                            "logger=none", f"run_dir={run_dir}"]))
        meta = json.loads((run_dir / "run_metadata.json").read_text())
        results.append((metrics["pre"], _losses(run_dir), meta["teacher_cache"]))
    (cold_pre, cold_losses, cold_cache), (warm_pre, warm_losses, warm_cache) = results
    assert cold_cache["built"] and not warm_cache["built"]  # the first run really was cold
    assert cold_pre == warm_pre
    assert [step for step, _, _ in cold_losses] == [1, 2, 3]
    assert cold_losses == warm_losses
