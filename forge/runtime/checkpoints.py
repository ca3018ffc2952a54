"""Atomic, verifiable checkpoint directories.

A checkpoint is first written into `<run_dir>/.staging/checkpoint-N/`. Only when every file is on
disk (fsync'ed) does the writer add `forge_checkpoint.json` (the marker: step, and size + sha256 of
every file), fsync it, and rename the whole directory to `<run_dir>/checkpoint-N`. A rename within
one file system is atomic, so `checkpoint-N/` either does not exist or holds a marker that describes
every byte in it. `kill -9` at any point leaves at worst a staging directory, which nothing loads.

On resume, `latest_complete_checkpoint` walks checkpoints from the newest step down and returns the
first whose files match its marker; incomplete (no marker) or corrupted (size or hash mismatch)
ones are skipped with a warning. `rotate` keeps the newest `keep_last` complete checkpoints and
never deletes the only complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from forge.runtime.layout import CHECKPOINT_MARKER, CHECKPOINT_PREFIX, RunLayout

log = logging.getLogger("forge.checkpoint")

MARKER = CHECKPOINT_MARKER
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


@dataclass(frozen=True)
class CheckpointCheck:
    """Whether a checkpoint directory can be resumed from, and why not."""

    path: Path
    step: int
    ok: bool
    problem: Optional[str] = None


def checkpoint_step(path: Path) -> Optional[int]:
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """`checkpoint-N` directories of a run, newest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p), reverse=True)  # type: ignore[arg-type,return-value]


def staging_dir(run_dir: Path, step: int) -> Path:
    return RunLayout(run_dir).staged_checkpoint(step)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _payload_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MARKER)


def finalize(staged: Path, final: Path, *, step: int, extra: Optional[dict[str, Any]] = None) -> Path:
    """Seal a fully written staging directory and move it into place as `final`.

    Order matters: payload fsync → marker written and fsync'ed → rename → parent fsync. If `final`
    already exists (the same step saved again after a resume), the old one is moved aside first
    and deleted only after the new one is in place.
    """
    staged, final = Path(staged), Path(final)
    payload = _payload_files(staged)
    files: dict[str, dict[str, Any]] = {}
    for path in payload:
        _fsync_file(path)
        files[str(path.relative_to(staged))] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    marker = {"format": 1, "step": step, "complete": True, "files": files, **(extra or {})}
    marker_path = staged / MARKER
    with open(marker_path, "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    for sub in sorted({p.parent for p in payload} | {staged}, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(sub)
    previous = None
    if final.exists():
        previous = final.with_name(f".replaced-{final.name}")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(staged, final)
    _fsync_dir(final.parent)
    try:
        staged.parent.rmdir()  # the staging area, if nothing else is being written there
    except OSError:
        pass
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return final


def verify(path: Path, mode: str = "sha256") -> CheckpointCheck:
    """Check a checkpoint directory against its marker (`mode`: sha256, or size only for speed)."""
    path = Path(path)
    named_step = checkpoint_step(path)
    step = -1 if named_step is None else named_step
    marker_path = path / MARKER
    if not marker_path.is_file():
        return CheckpointCheck(path, step, False, "no completion marker (the save never finished)")
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return CheckpointCheck(path, step, False, f"unreadable marker ({exc})")
    if named_step is None:  # a sealed directory that is not a checkpoint-N (e.g. teacher_sft/)
        step = marker.get("step", -1)
    if not marker.get("complete") or marker.get("step") != step:
        return CheckpointCheck(path, step, False, f"marker does not describe step {step}")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return CheckpointCheck(path, step, False, f"{name} is missing")
        if file.stat().st_size != expected["bytes"]:
            return CheckpointCheck(path, step, False,
                                   f"{name} has {file.stat().st_size} bytes, the marker says {expected['bytes']}")
        if mode == "sha256" and _sha256(file) != expected["sha256"]:
            return CheckpointCheck(path, step, False, f"{name} does not match its sha256")
    return CheckpointCheck(path, step, True)


def scan(run_dir: Path, mode: str = "sha256") -> tuple[Optional[Path], list[CheckpointCheck]]:
    """The newest checkpoint that verifies, and the checks of every newer one that did not."""
    skipped: list[CheckpointCheck] = []
    for path in checkpoint_dirs(run_dir):
        check = verify(path, mode)
        if check.ok:
            return path, skipped
        skipped.append(check)
    return None, skipped


def skip_message(check: CheckpointCheck) -> str:
    return f"Skipping {check.path.name}: {check.problem}; falling back to the previous checkpoint."


def latest_complete_checkpoint(run_dir: Path, mode: str = "sha256") -> Optional[Path]:
    """The newest checkpoint that verifies; warns about every newer one that does not."""
    found, skipped = scan(run_dir, mode)
    for check in skipped:
        log.warning(skip_message(check))
    return found


def rotate(run_dir: Path, keep_last: Optional[int], *, protect: Iterable[Path] = ()) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints (None or <= 0 keeps all).

    Incomplete checkpoints older than the newest complete one are deleted too (they can never be
    resumed from). The newest complete checkpoint always survives, whatever `keep_last` says.
    """
    if keep_last is None or keep_last <= 0:
        return []
    protected = {Path(p).resolve() for p in protect}
    complete, removed = 0, []
    newest_complete_seen = False
    for path in checkpoint_dirs(run_dir):
        ok = verify(path, "size").ok
        if ok:
            complete += 1
            newest_complete_seen = True
            if complete <= keep_last or path.resolve() in protected:
                continue
        elif not newest_complete_seen:
            continue  # newer than every complete one: maybe still being inspected; leave it
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for path in removed:
        log.info("Removed old checkpoint %s (keeping the last %d)", path.name, keep_last)
    return removed


def clear_staging(run_dir: Path) -> None:
    """Remove half-written checkpoints left by a process that died mid-save."""
    staging = RunLayout(run_dir).staging
    if staging.exists():
        for leftover in staging.iterdir():
            log.warning("Removing unfinished checkpoint save %s", leftover)
        shutil.rmtree(staging, ignore_errors=True)
    for leftover in Path(run_dir).glob(f".replaced-{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
