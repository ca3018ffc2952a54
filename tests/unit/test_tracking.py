"""Tracking writes real offline wandb runs; these tests read them back with tests/wandb_reader.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import TrainerControl, TrainerState, TrainingArguments

from forge.runtime.secrets import REDACTED
from forge.tracking.base import NullTracker, Tracker, flatten, numeric_metrics
from forge.tracking.callback import TrackerCallback
from forge.tracking.wandb_tracker import RUN_ID_FILE, WandbTracker, argv_has_secret, resolve_mode
from tests.wandb_reader import read_run

FAKE_KEY = "sk-forge-unit-FAKEKEY-9f8e7d6c5b4a"
FAKE_TOKEN = "hf_forgeUnitFakeToken0123456789"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("RANK", raising=False)


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


class Recorder(Tracker):
    """A backend that keeps what reached its hooks: exercises the real base-class filtering."""

    def __init__(self) -> None:
        super().__init__(name="recorder")
        self.logged: list[tuple[dict, int]] = []
        self.summaries: list[dict] = []

    def _log(self, metrics: dict, step: int) -> None:
        self.logged.append((metrics, step))

    def _summary(self, values: dict) -> None:
        self.summaries.append(values)


def test_offline_run_roundtrip(offline: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tracker = WandbTracker(mode="auto", tags=["unit"])
    config = {
        "model": {"name": "minilm", "layers": 6},
        "trainer": {"learning_rate": 5e-5},
        "wandb": {"api_key": FAKE_KEY},
        "hub": {"hf_token": FAKE_TOKEN},
    }
    with caplog.at_level(logging.INFO, logger="forge"):
        tracker.start(tmp_path, config, name="roundtrip", group="g1", tags=["extra"])
    assert tracker.resolved_mode == "offline"
    assert any("wandb sync" in r.getMessage() for r in caplog.records)

    tracker.log({"loss": 1.25, "loss/ce": 0.75, "learning_rate": 5e-5, "note": "not a number"}, step=1)
    tracker.log({"loss": 0.5, "grad_norm": torch.tensor(2.0)}, step=2)
    tracker.summary({
        "eval": {"pre": {"accuracy": 0.5}, "post": {"accuracy": 0.75}},
        "transfer_gap": {"accuracy": 0.25},
        "best_step": 2,
    })
    tracker.finish("finished")
    assert not tracker.active

    run = read_run(tmp_path)
    run_id = (tmp_path / RUN_ID_FILE).read_text().strip()
    assert run.run_ids == [run_id]
    assert run.config["model"] == {"name": "minilm", "layers": 6}
    assert run.config["trainer"]["learning_rate"] == 5e-5
    assert run.config["wandb"]["api_key"] == REDACTED
    assert run.config["hub"]["hf_token"] == REDACTED
    everything = _all_bytes(tmp_path)
    assert FAKE_KEY.encode() not in everything and FAKE_TOKEN.encode() not in everything

    rows = {row["_step"]: row for row in run.history}
    assert sorted(rows) == [1, 2]
    assert rows[1]["loss"] == 1.25 and rows[1]["loss/ce"] == 0.75 and rows[1]["learning_rate"] == 5e-5
    assert "note" not in rows[1]
    assert rows[2]["loss"] == 0.5 and rows[2]["grad_norm"] == 2.0

    assert run.summary["eval/pre/accuracy"] == 0.5
    assert run.summary["eval/post/accuracy"] == 0.75
    assert run.summary["transfer_gap/accuracy"] == 0.25
    assert run.summary["best_step"] == 2
    assert run.segments[0].exit_code == 0 and not run.segments[0].preempting


def test_resume_reuses_run_id(offline: None, tmp_path: Path) -> None:
    first = WandbTracker()
    first.start(tmp_path, {"seed": 1}, name="resume")
    first.log({"loss": 2.0}, step=1)
    first.finish("interrupted")
    run_id = (tmp_path / RUN_ID_FILE).read_text().strip()

    second = WandbTracker()  # a new process after preemption builds a new tracker
    second.start(tmp_path, OmegaConf.create({"seed": 1, "hub": {"token": FAKE_TOKEN}}), name="resume")
    second.log({"loss": 1.0}, step=3)
    second.finish("failed")

    assert (tmp_path / RUN_ID_FILE).read_text().strip() == run_id
    run = read_run(tmp_path)
    assert run.run_ids == [run_id]
    assert len(run.segments) == 2  # offline, each start is its own offline-run-* directory
    assert [s.exit_code for s in run.segments] == [130, 1]
    assert [s.preempting for s in run.segments] == [True, False]
    assert [(row["_step"], row["loss"]) for row in run.history] == [(1, 2.0), (3, 1.0)]
    assert run.config == {"seed": 1, "hub": {"token": REDACTED}}  # a DictConfig is redacted too
    assert FAKE_TOKEN.encode() not in _all_bytes(tmp_path)


def test_null_tracker_writes_nothing(tmp_path: Path, compose) -> None:
    tracker = instantiate(compose(["logger=none"]).logger)
    assert isinstance(tracker, NullTracker) and tracker.name == "none"
    tracker.start(tmp_path, {"a": 1}, name="null")
    tracker.log({"loss": 1.0}, step=1)
    tracker.summary({"eval": {"accuracy": 1.0}})
    tracker.finish("finished")
    assert list(tmp_path.iterdir()) == []


def test_nonzero_rank_is_a_noop(offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RANK", "1")
    tracker = WandbTracker()
    tracker.start(tmp_path, {"a": 1}, name="rank1")
    tracker.log({"loss": 1.0}, step=1)
    tracker.summary({"x": 1})
    tracker.finish("finished")
    assert not tracker.active and tracker.run is None
    assert list(tmp_path.iterdir()) == []

    # Rank from an initialised process group (RANK unset): still a no-op off rank 0.
    monkeypatch.delenv("RANK")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 3)
    tracker.start(tmp_path, {"a": 1}, name="rank3")
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish("failed")
    assert list(tmp_path.iterdir()) == []


def test_callback_forwards_trainer_logs(offline: None, tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.start(tmp_path, {}, name="cb")
    callback = TrackerCallback(recorder)
    state = TrainerState(global_step=7)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to="none")
    logs = {
        "loss": 0.9, "loss/ce": 0.6, "loss/kd": 0.3, "learning_rate": 1e-4, "grad_norm": torch.tensor(1.5),
        "epoch": 0.25, "eval/accuracy": 0.8, "eval/loss": 0.7, "note": "dropped",
    }
    callback.on_log(args, state, TrainerControl(), logs=logs)
    callback.on_log(args, state, TrainerControl(), logs=None)
    assert len(recorder.logged) == 1
    metrics, step = recorder.logged[0]
    assert step == 7
    assert metrics == {k: (1.5 if k == "grad_norm" else v) for k, v in logs.items() if k != "note"}

    # The same path into a real offline run.
    tracker = WandbTracker()
    tracker.start(tmp_path / "real", {}, name="cb-real")
    TrackerCallback(tracker).on_log(args, state, TrainerControl(), logs=logs)
    tracker.finish("finished")
    (row,) = read_run(tmp_path / "real").history
    assert row["_step"] == 7 and row["loss/kd"] == 0.3 and row["eval/accuracy"] == 0.8


def test_mode_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.com login user password x\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode("auto") == "offline"
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    assert resolve_mode("auto") == "online"
    netrc.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"
    with pytest.raises(ValueError):
        resolve_mode("sometimes")


def test_logger_configs_instantiate(compose) -> None:
    tracker = instantiate(compose(["logger=wandb"]).logger)
    assert isinstance(tracker, WandbTracker)
    assert (tracker.name, tracker.project, tracker.mode, tracker.tags) == ("wandb", "forge", "auto", [])
    for option, cls in (("wandb", WandbTracker), ("none", NullTracker)):
        cfg = compose([f"logger={option}"])
        tracker = instantiate(cfg.logger)
        assert type(tracker) is cls and tracker.name == option == cfg.logger.name


def test_value_hygiene() -> None:
    assert numeric_metrics({"a": 1, "b": 2.5, "c": "x", "d": True, "e": None, "f": torch.tensor([1.0, 2.0])}) == {
        "a": 1, "b": 2.5,
    }
    assert flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a/b/c": 1, "d": 2}
    assert argv_has_secret(["task=demo", "+hub.hf_token=abc"]) and argv_has_secret(["--password", "x"])
    assert not argv_has_secret(["task=demo", "model=minilm"])
    with pytest.raises(ValueError):
        NullTracker().finish("crashed")


def test_disabled_mode_writes_nothing(offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = WandbTracker()
    tracker.start(tmp_path, {"a": 1}, name="disabled")
    tracker.log({"loss": 1.0}, step=1)
    tracker.summary({"eval": {"accuracy": 1.0}})
    tracker.finish("finished")
    assert tracker.resolved_mode == "disabled"
    assert list(tmp_path.iterdir()) == []
