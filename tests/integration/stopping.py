"""Stopping an in-process run the way a scheduler would: a real signal once a checkpoint is sealed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path


def signal_when_sealed(checkpoint: Path, signum: int = signal.SIGUSR1, timeout: float = 600.0) -> None:
    """Send `signum` to this process (from a thread) once `checkpoint` holds its seal."""
    def wait_then_signal() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not (checkpoint / "forge_checkpoint.json").is_file():
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=wait_then_signal, daemon=True).start()
