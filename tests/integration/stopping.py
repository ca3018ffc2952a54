"""Stopping an in-process run the way a scheduler would: a real signal once a checkpoint is sealed."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def signal_when_sealed(checkpoint: Path, signum: int = signal.SIGUSR1, timeout: float = 600.0) -> Iterator[None]:
    """Within the block, send `signum` to this process (from a thread) once `checkpoint` holds its seal.

    The signal is sent only for a sealed checkpoint and only while the block runs: a run that fails
    before sealing must fail its own test, never deliver a stray signal to the test session later
    (with no handler installed, SIGUSR1 ends pytest itself)."""
    block_done = threading.Event()
    sending = threading.Lock()

    def wait_then_signal() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not block_done.is_set():
            if (checkpoint / "forge_checkpoint.json").is_file():
                with sending:
                    if not block_done.is_set():
                        os.kill(os.getpid(), signum)
                return
            block_done.wait(0.05)

    watcher = threading.Thread(target=wait_then_signal, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with sending:
            block_done.set()
        watcher.join()


def stop_then_resume(run: Callable[..., dict], stopped: Path, *config: str, at_step: int = 2) -> dict:
    """`run(stopped, *config)` stopped by a signal once checkpoint-`at_step` is sealed, then the same
    command again; returns the resumed run's metrics (after checking that it did resume)."""
    import pytest

    from forge.runtime.signals import RunInterrupted

    with signal_when_sealed(stopped / f"checkpoint-{at_step}"), pytest.raises(RunInterrupted):
        run(stopped, *config, "signals.on_signal=exit")
    resumed = run(stopped, *config)
    assert "Resuming from" in (stopped / "output.log").read_text()
    return resumed
