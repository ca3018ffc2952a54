"""Shared test fixtures: offline environment, Hydra composition, tiny real runs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Teacher caches (shared fine-tuned teachers, signals) of this test session go to a fresh directory,
# never into the user's ~/.cache/forge; tests that check building and reuse pass their own root.
# The directory is removed when the session ends (it holds fine-tuned teachers: hundreds of MB).
SESSION_TEACHER_CACHE: str | None = None
if "FORGE_TEACHER_CACHE_DIR" not in os.environ:
    SESSION_TEACHER_CACHE = tempfile.mkdtemp(prefix="forge-test-teacher-cache-")
    os.environ["FORGE_TEACHER_CACHE_DIR"] = SESSION_TEACHER_CACHE

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def compose_config(overrides: list[str]):
    """Compose `conf/config.yaml` with overrides, exactly as launch.py would (no Hydra runtime)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from forge.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=overrides)


@pytest.fixture
def compose() -> Callable[[list[str]], object]:
    return compose_config


def group_options(group: str) -> list[str]:
    """Every option of a config group, found by glob so no YAML goes stale untested."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# A tiny real run: packaged MiniLM pair on a small slice of the shipped demo data.
TINY_RUN = [
    "task=demo",
    "model=minilm",
    "task.max_train_samples=32",
    "task.max_eval_samples=16",
    "task.max_length=32",
    "trainer.max_steps=3",
    "trainer.per_device_train_batch_size=8",
    "trainer.per_device_eval_batch_size=16",
    "trainer.logging_steps=1",
    "trainer.save_steps=2",
    "trainer.learning_rate=1e-3",
    "teacher_strategy.finetune_steps=2",
    "teacher_strategy.finetune_batch_size=8",
]


@pytest.fixture
def tiny_run(tmp_path: Path) -> Callable[..., tuple[object, dict]]:
    """Compose TINY_RUN + extra overrides with an output root in tmp_path, run it, return (cfg, metrics)."""
    import forge

    def _run(*extra: str):
        cfg = compose_config(TINY_RUN + [f"output_root={tmp_path / 'outputs'}", *extra])
        return cfg, forge.run(cfg)

    return _run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this session's teacher cache (left alone when the caller named its own directory)."""
    if SESSION_TEACHER_CACHE is not None:
        shutil.rmtree(SESSION_TEACHER_CACHE, ignore_errors=True)
