"""An exclusive, blocking file lock for building shared cache directories.

Several sweep tasks (a SLURM array, or DDP ranks) may need the same cache at once. One takes the
lock and builds; the others block on it, then find the finished entries and only read. `flock` is
released by the kernel if the holder dies, so a crashed builder never leaves the cache locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[float]:
    """Hold an exclusive lock on `path` (created if missing); yields the seconds spent waiting."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    t0 = time.monotonic()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for another process that is building %s (lock %s)", what, path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        waited = time.monotonic() - t0
        if waited > 1.0:
            log.info("Got the lock for %s after %.1f s", what, waited)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}@{os.uname().nodename}\n".encode())
        yield waited
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
