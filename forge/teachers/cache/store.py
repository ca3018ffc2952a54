"""On-disk layout of one teacher-signal cache: memory-mapped arrays plus a manifest.

    <cache_root>/signals/<key>/
        manifest.json      the key's parts, the example lengths' file, and one record per entry
        lengths.npy        int32 [N]: real tokens of each training example (right-padded inputs)
        logits.npy         [N, C]       sequence-level logits (classification)
        hidden_<i>.npy     [sum(len), H] hidden state i (0 = embeddings), one row per real token
        attn_<i>.npy       [sum(heads·len²)] attention block i's probabilities, example after example
        .lock              held while an entry is being built

Entries are ragged (no padding is stored): SST-2 sentences average ~25 of 64 tokens, so attention
maps take a sixth of the padded size. An entry exists only once its file is complete: it is
written under a temporary name, fsync'ed, renamed, and only then recorded in the manifest, so a
crash mid-build leaves the entry missing (rebuilt next time), never half-written and trusted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from forge.runtime.rundir import read_json, write_json_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LENGTHS = "lengths.npy"


def entry_logits() -> str:
    return "logits"


def entry_hidden(index: int) -> str:
    return f"hidden_{index}"


def entry_attention(index: int) -> str:
    return f"attn_{index}"


def id_dtype_for(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type holding ids 0 .. vocab_size-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def row_offsets(lengths: np.ndarray) -> np.ndarray:
    """[N + 1] start of each example's rows in a `hidden_<i>` entry (one row per real token)."""
    return np.concatenate([[0], np.cumsum(lengths.astype(np.int64))])


def attention_offsets(lengths: np.ndarray, heads: int) -> np.ndarray:
    """[N + 1] start of each example's heads·len·len block in an `attn_<i>` entry."""
    return np.concatenate([[0], np.cumsum(heads * lengths.astype(np.int64) ** 2)])


@dataclass
class SignalStore:
    """One key's directory. Reads are lock-free (entries are immutable once recorded)."""

    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def _stored_lengths(self) -> Optional[np.ndarray]:
        """The example lengths, or None when the file is absent or damaged (truncated, unreadable,
        another count than the manifest's): every entry is laid out by them, so none is then read."""
        try:
            lengths = np.load(self.path / LENGTHS)
        except (OSError, ValueError, EOFError):
            return None
        expected = self.manifest().get("num_examples")
        return lengths if expected is None or lengths.shape == (int(expected),) else None

    def entries(self) -> dict[str, dict[str, Any]]:
        """Recorded entries whose files are present with the recorded size (none when the lengths
        they are laid out by are damaged)."""
        found: dict[str, dict[str, Any]] = {}
        recorded = self.manifest().get("entries", {})
        if recorded and self._stored_lengths() is None:
            log.warning("Teacher cache %s: %s is damaged; no entry is read and all will be built again",
                        self.path, LENGTHS)
            return found
        for name, record in recorded.items():
            file = self.path / record["file"]
            size = file.stat().st_size if file.is_file() else None
            if size == record["bytes"]:
                found[name] = record
            else:
                log.warning("Teacher cache %s: entry '%s' is damaged (%s holds %s of its %d bytes); it is not read and "
                            "will be built again", self.path, name, file.name,
                            "none" if size is None else size, record["bytes"])
        return found

    def holds(self, key: str, wanted: list[str]) -> bool:
        """This key's directory with every wanted entry complete (nothing to build)."""
        return self.manifest().get("key") == key and not self.missing(wanted)

    def missing(self, wanted: list[str]) -> list[str]:
        have = self.entries()
        return [name for name in wanted if name not in have]

    def init(self, key: str, parts: dict[str, Any], lengths: np.ndarray) -> None:
        """Create the directory with its lengths and an empty manifest (under the build lock)."""
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        stored = self._stored_lengths() if manifest.get("key") == key else None
        if stored is not None:
            if not np.array_equal(stored, lengths):
                raise RuntimeError(f"teacher cache {self.path} holds other example lengths under the same key; "
                                   "delete the directory and run again")
            return
        _save_atomic(self.path / LENGTHS, lengths.astype(np.int32))
        write_json_atomic(self.manifest_path, {"key": key, "format": FORMAT_VERSION, "parts": parts,
                                               "num_examples": int(len(lengths)), "entries": {}})

    def lengths(self) -> np.ndarray:
        return np.load(self.path / LENGTHS)

    def open(self, name: str, entries: Optional[dict[str, dict[str, Any]]] = None) -> np.ndarray:
        """A read-only memory map of a recorded entry (`entries`: a prior `entries()` to reuse)."""
        record = (self.entries() if entries is None else entries).get(name)
        if record is None:
            raise KeyError(f"teacher cache {self.path} has no complete entry '{name}'")
        return np.load(self.path / record["file"], mmap_mode="r")

    def new_entry(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> "EntryWriter":
        return EntryWriter(self, name, shape, np.dtype(dtype))

    def record(self, name: str, meta: dict[str, Any]) -> None:
        manifest = self.manifest()
        manifest.setdefault("entries", {})[name] = meta
        write_json_atomic(self.manifest_path, manifest)

    def record_build(self, entries: list[str], seconds: float) -> None:
        """Append one build to the manifest's history (which process built what, and when): an
        audit of "built once" across the jobs and ranks that share this directory."""
        import socket

        from forge.runtime.metadata import now_iso

        manifest = self.manifest()
        manifest.setdefault("builds", []).append({"entries": list(entries), "seconds": round(seconds, 2),
                                                  "host": socket.gethostname(), "pid": os.getpid(), "at": now_iso()})
        write_json_atomic(self.manifest_path, manifest)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


class EntryWriter:
    """Writes one entry through a memory map under a temporary name; `commit` publishes it."""

    def __init__(self, store: SignalStore, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.store, self.name, self.dtype = store, name, dtype
        self.file = f"{name}.npy"
        self.tmp = store.path / f".{name}.npy.partial-{os.getpid()}"
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def commit(self, **meta: Any) -> None:
        self.array.flush()
        del self.array
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = self.store.path / self.file
        os.replace(self.tmp, final)
        self.store.record(self.name, {"file": self.file, "bytes": final.stat().st_size,
                                      "dtype": self.dtype.name, **meta})

    def abort(self) -> None:
        self.array = None  # type: ignore[assignment]
        self.tmp.unlink(missing_ok=True)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def human_bytes(n: Optional[int]) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"
