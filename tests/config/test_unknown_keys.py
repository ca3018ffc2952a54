"""Every group's schema refuses keys it does not have, and a misspelled experiment is refused.

Hydra's `+key=value` adds a key even to a structured config, so the unknown key is found by
`config_unknown_key_problems` when the config is checked (exit 2, nothing written); a misspelled
`experiment=` fails at compose (Hydra lists the valid experiments; exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from forge.config.ranges import config_unknown_key_problems
from forge.config.schema import (
    ForgeConfig,
    HFBackendConfig,
    NullLoggerConfig,
    OpenAIBackendConfig,
    WandbLoggerConfig,
)
from tests.conftest import REPO_ROOT, compose_config, group_options

TRACEBACK = "Traceback (most recent call last)"

UNKNOWN_KEYS = [
    ("+logger.api_key=xyz", "logger.api_key"),
    ("+teacher_backend.foo=1", "teacher_backend.foo"),
    ("+task.foo=1", "task.foo"),
    ("+model.student.foo=1", "model.student.foo"),
    ("+teacher_strategy.foo=1", "teacher_strategy.foo"),
    ("+loss.foo=1", "loss.foo"),
    ("+trainer.foo=1", "trainer.foo"),
]


def launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("override,key", UNKNOWN_KEYS)
def test_unknown_key_is_a_problem_naming_it(override, key):
    problems = config_unknown_key_problems(compose_config([override]))
    assert [p.key for p in problems] == [key]
    assert "is not a key of" in problems[0].message and "valid keys" in problems[0].fix
    assert "xyz" not in problems[0].render()  # the value of a mistyped key is never echoed


def test_unknown_keys_in_every_option_of_logger_and_teacher_backend():
    for group in ("logger", "teacher_backend"):
        for option in group_options(group):
            problems = config_unknown_key_problems(compose_config([f"{group}={option}", f"+{group}.bogus=1"]))
            assert [p.key for p in problems] == [f"{group}.bogus"], (group, option)


def test_logger_and_backend_schemas_match_the_constructors():
    """Every schema key is a constructor argument of the class its `_target_` names."""
    import inspect

    from hydra.utils import get_class

    for schema in (NullLoggerConfig, WandbLoggerConfig, HFBackendConfig, OpenAIBackendConfig):
        params = inspect.signature(get_class(schema._target_).__init__).parameters
        keys = {name for name in OmegaConf.structured(schema).keys() if name != "_target_"}
        assert keys <= set(params), (schema.__name__, keys - set(params))


def test_logger_and_backend_may_be_left_out():
    cfg = compose_config(["~logger", "~teacher_backend"])
    assert cfg.logger is None and cfg.teacher_backend is None
    assert config_unknown_key_problems(cfg) == []
    assert OmegaConf.structured(ForgeConfig).logger is None


def test_unknown_keys_through_launch_are_refused_before_anything_is_written(tmp_path):
    """One real command line with every group's unknown key: each is named, all at once."""
    out = tmp_path / "out"
    proc = launch([*(override for override, _ in UNKNOWN_KEYS), "logger=none", f"output_root={out}"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    for _, key in UNKNOWN_KEYS:
        assert key in text
    assert "xyz" not in text  # the value of a mistyped key is never echoed (it may be a secret)
    assert TRACEBACK not in text
    assert not out.exists() or not any(out.iterdir())


def test_misspelled_experiment_lists_the_valid_ones(tmp_path):
    out = tmp_path / "out"
    proc = launch(["experiment=far_stduy", f"output_root={out}"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "far_stduy" in text and "far_study" in text and "demo" in text
    assert TRACEBACK not in text
    assert not out.exists()


def test_misspelled_experiment_fails_at_compose():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="far_stduy"):
        compose_config(["experiment=far_stduy"])


def test_experiment_stays_optional_and_selectable():
    assert compose_config([]).trainer.max_steps == 100  # config.yaml alone, no experiment
    assert compose_config(["experiment=demo"]).trainer.max_steps == 150
    assert compose_config(["experiment=far_study"]).study_name == "far_study"
