"""Read back what an offline wandb run wrote, so tests check the real files, not mocks.

wandb 0.31 no longer ships a Python reader (`wandb.sdk.internal.datastore` was removed when the
Go `wandb-core` took over writing), but the `.wandb` file format is unchanged: the LevelDB log
format (https://github.com/google/leveldb/blob/main/doc/log_format.md) with a 7-byte file header
`":W&B" | uint16 0xBEE1 | uint8 version 0`, 32 KiB blocks, 7-byte record headers
`uint32 crc | uint16 length | uint8 type` (little-endian; the CRC is zlib's crc32 seeded with the
crc32 of the type byte), and payloads that are `wandb.proto.wandb_internal_pb2.Record` messages.

A resumed offline run writes a second `offline-run-<time>-<id>[-N]` directory with the same id;
`read_run` merges every segment in start-time order, as `wandb sync` of all of them would.
Lexical order is not start order: a second start within the same second gets a `-1` suffix.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2 as pb

HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
BLOCK = 32768
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


def iter_payloads(path: Path) -> Iterator[bytes]:
    """Yield each reassembled record payload; stop quietly at a torn tail (run still writing)."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size:  # created but not written yet
        return
    ident, magic, version = HEADER.unpack_from(data, 0)
    if (ident, magic, version) != (IDENT, MAGIC, VERSION):
        raise ValueError(f"{path}: not a wandb v0 transaction log ({ident!r}, {magic:#x}, {version})")
    pos, pending = HEADER.size, None
    while pos + RECORD_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:  # block trailer: zero padding
            pos += left
            continue
        crc, length, rtype = RECORD_HEADER.unpack_from(data, pos)
        if crc == 0 and length == 0 and rtype == 0:  # zero-filled rest of a block
            pos += left
            continue
        start = pos + RECORD_HEADER.size
        chunk = data[start : start + length]
        if len(chunk) < length or rtype not in _TYPE_CRC:
            return
        if zlib.crc32(chunk, _TYPE_CRC[rtype]) != crc:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos = start + length
        if rtype == FULL:
            yield chunk
        elif rtype == FIRST:
            pending = chunk
        elif pending is not None:
            pending += chunk
            if rtype == LAST:
                yield pending
                pending = None


def iter_records(path: Path) -> Iterator[pb.Record]:
    for payload in iter_payloads(path):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _item_key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def _value(item: Any) -> Any:
    return json.loads(item.value_json) if item.value_json else None


@dataclass
class Segment:
    """One `offline-run-*` directory: one process's share of a run."""

    path: Path
    run_id: str | None = None
    start_time: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    preempting: bool = False
    record_types: list[str] = field(default_factory=list)


@dataclass
class OfflineRun:
    """Everything a run directory's offline wandb runs hold, merged across resumes."""

    run_ids: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    segments: list[Segment]


def _apply(target: dict[str, Any], update: Any, remove: Any) -> None:
    """Apply a config/summary record: set the updated items, drop the removed ones."""
    for item in update:
        target[_item_key(item)] = _value(item)
    for item in remove:
        target.pop(_item_key(item), None)


def read_segment(run_path: Path) -> Segment:
    """Parse the single `run-<id>.wandb` file inside one `offline-run-*` directory."""
    files = sorted(Path(run_path).glob("run-*.wandb"))
    if len(files) > 1:
        raise ValueError(f"{run_path}: expected one run-*.wandb file, found {len(files)}")
    seg = Segment(path=Path(run_path))
    for record in iter_records(files[0]) if files else ():
        kind = record.WhichOneof("record_type")
        seg.record_types.append(kind or "")
        if kind == "run":
            seg.run_id = record.run.run_id
            seg.start_time = record.run.start_time.seconds + record.run.start_time.nanos / 1e9
            _apply(seg.config, record.run.config.update, ())
        elif kind == "config":
            _apply(seg.config, record.config.update, record.config.remove)
        elif kind == "history":
            row = {_item_key(item): _value(item) for item in record.history.item}
            if "_step" not in row and record.history.HasField("step"):
                row["_step"] = record.history.step.num
            seg.history.append(row)
        elif kind == "summary":
            _apply(seg.summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            seg.exit_code = record.exit.exit_code
        elif kind == "preempting":
            seg.preempting = True
    seg.config.pop("_wandb", None)
    return seg


def offline_run_dirs(run_dir: Path) -> list[Path]:
    """Every `offline-run-*` directory under `run_dir/wandb` (or `run_dir/.wandb`)."""
    dirs: list[Path] = []
    for name in ("wandb", ".wandb"):
        base = Path(run_dir) / name
        if base.is_dir():
            dirs += [p for p in base.glob("offline-run-*") if p.is_dir() and not p.is_symlink()]
    return dirs


def read_run(run_dir: Path, wait: float = 10.0) -> OfflineRun:
    """Merge all segments in start order: config/summary updates win by recency, history concatenates.

    `run.finish()` returns before wandb-core has flushed the offline transaction log (it is
    complete by process exit, but a reader in the same process can see only the 7-byte header), so
    this polls up to `wait` seconds until every segment holds its `exit` record.
    """
    deadline = time.monotonic() + wait
    while True:
        segments = [read_segment(p) for p in offline_run_dirs(run_dir)]
        if all(seg.exit_code is not None for seg in segments) or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    segments.sort(key=lambda s: (s.start_time, s.path.name))
    run_ids: list[str] = []
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for seg in segments:
        if seg.run_id and seg.run_id not in run_ids:
            run_ids.append(seg.run_id)
        config.update(seg.config)
        history += seg.history
        summary.update(seg.summary)
    return OfflineRun(run_ids=run_ids, config=config, history=history, summary=summary, segments=segments)
