"""Atomic checkpoint directories: sealing, verification, fallback, rotation, staging cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.runtime.checkpoints import (
    MARKER, checkpoint_dirs, clear_staging, finalize, latest_complete_checkpoint, rotate, staging_dir, verify,
)
from forge.runtime.resume import decide_resume
from forge.config.errors import ConfigError


def _save(run_dir: Path, step: int, payload: bytes = b"weights") -> Path:
    staged = staging_dir(run_dir, step)
    (staged / "sub").mkdir(parents=True)
    (staged / "model.safetensors").write_bytes(payload * 100)
    (staged / "sub" / "rng.pth").write_bytes(b"rng")
    return finalize(staged, run_dir / f"checkpoint-{step}", step=step, extra={"forge": {"loss_schedule_step": step}})


def test_finalize_moves_staging_into_place_with_a_marker(tmp_path):
    final = _save(tmp_path, 3)
    assert final == tmp_path / "checkpoint-3" and not staging_dir(tmp_path, 3).exists()
    assert not (tmp_path / ".staging").exists(), "empty staging area is cleaned up"
    marker = json.loads((final / MARKER).read_text())
    assert marker["step"] == 3 and marker["complete"] is True
    assert marker["files"]["model.safetensors"]["bytes"] == 700
    assert set(marker["files"]) == {"model.safetensors", "sub/rng.pth"}
    assert marker["forge"]["loss_schedule_step"] == 3
    assert verify(final).ok


def test_verify_detects_missing_marker_truncation_and_bit_flips(tmp_path):
    final = _save(tmp_path, 2)
    (final / "model.safetensors").write_bytes(b"weights" * 99)  # truncated
    check = verify(final)
    assert not check.ok and "bytes" in check.problem
    final = _save(tmp_path, 4)
    data = bytearray((final / "model.safetensors").read_bytes())
    data[10] ^= 0xFF
    (final / "model.safetensors").write_bytes(bytes(data))  # same size, different content
    assert verify(final, "size").ok
    check = verify(final, "sha256")
    assert not check.ok and "sha256" in check.problem
    (final / MARKER).unlink()
    assert "marker" in verify(final).problem


def test_latest_complete_skips_broken_newer_checkpoints_with_a_warning(tmp_path, caplog):
    _save(tmp_path, 2)
    _save(tmp_path, 4)
    newest = _save(tmp_path, 6)
    (newest / "model.safetensors").write_bytes(b"")
    half = tmp_path / "checkpoint-8"  # e.g. written by a tool that does not seal
    half.mkdir()
    with caplog.at_level("WARNING"):
        assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    text = caplog.text
    assert "checkpoint-8" in text and "checkpoint-6" in text


def test_rotation_keeps_last_n_and_never_the_only_complete_one(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step)
    rotate(tmp_path, 2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-4", "checkpoint-3"]
    # Newer checkpoints broken: the only complete one survives any limit.
    for step in (5, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "model.safetensors").write_bytes(b"x")
    rotate(tmp_path, 1)
    names = [p.name for p in checkpoint_dirs(tmp_path)]
    assert "checkpoint-3" in names, "the only complete checkpoint was deleted"
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    assert rotate(tmp_path, None) == []


def test_saving_the_same_step_again_replaces_it_atomically(tmp_path):
    _save(tmp_path, 5, b"old")
    final = _save(tmp_path, 5, b"new")
    assert (final / "model.safetensors").read_bytes() == b"new" * 100
    assert verify(final).ok and not list(tmp_path.glob(".replaced-*"))


def test_clear_staging_removes_half_written_saves(tmp_path):
    staged = staging_dir(tmp_path, 7)
    staged.mkdir(parents=True)
    (staged / "optimizer.pt").write_bytes(b"partial")
    clear_staging(tmp_path)
    assert not (tmp_path / ".staging").exists()
    assert latest_complete_checkpoint(tmp_path) is None


def test_resume_decisions(tmp_path):
    run_dir = tmp_path / "run"
    assert not decide_resume("auto", run_dir).resuming
    _save(run_dir, 2)
    assert decide_resume("auto", run_dir).checkpoint == run_dir / "checkpoint-2"
    with pytest.raises(ConfigError, match="resume.*already holds checkpoints"):
        decide_resume("never", run_dir)
    other = tmp_path / "other"
    assert decide_resume(str(run_dir), other).checkpoint == run_dir / "checkpoint-2"
    assert decide_resume(str(run_dir / "checkpoint-2"), other).checkpoint == run_dir / "checkpoint-2"
    # The run's own checkpoint wins over an explicit (possibly stale) path.
    _save(other, 9)
    assert decide_resume(str(run_dir / "checkpoint-2"), other).checkpoint == other / "checkpoint-9"
    with pytest.raises(ConfigError, match="does not exist"):
        decide_resume(str(tmp_path / "nope"), tmp_path / "fresh")
    (run_dir / "checkpoint-2" / MARKER).unlink()
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        decide_resume(str(run_dir / "checkpoint-2"), tmp_path / "fresh")


def test_verify_mode_is_read_as_its_plain_value(compose):
    from forge.runtime.resume import verify_mode

    assert verify_mode(compose([])) == "sha256"
    assert verify_mode(compose(["checkpoint.verify=size"])) == "size"
