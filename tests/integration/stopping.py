"""Stopping an in-process run the way a scheduler would: a real signal once a checkpoint is sealed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable


def signal_when_sealed(checkpoint: Path, signum: int = signal.SIGUSR1, timeout: float = 600.0) -> None:
    """Send `signum` to this process (from a thread) once `checkpoint` holds its seal."""
    def wait_then_signal() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not (checkpoint / "forge_checkpoint.json").is_file():
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=wait_then_signal, daemon=True).start()


def stop_then_resume(run: Callable[..., dict], stopped: Path, *config: str, at_step: int = 2) -> dict:
    """`run(stopped, *config)` stopped by a signal once checkpoint-`at_step` is sealed, then the same
    command again; returns the resumed run's metrics (after checking that it did resume)."""
    import pytest

    from forge.runtime.signals import RunInterrupted

    signal_when_sealed(stopped / f"checkpoint-{at_step}")
    with pytest.raises(RunInterrupted):
        run(stopped, *config, "signals.on_signal=exit")
    resumed = run(stopped, *config)
    assert "Resuming from" in (stopped / "output.log").read_text()
    return resumed
