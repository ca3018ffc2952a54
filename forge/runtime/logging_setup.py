"""Console + `output.log` logging for a run (one handler pair, removed when the run ends).

With several ranks, rank 0 speaks for the run; the others add to output.log (and their console)
only what adds something, warnings and errors, each line tagged with its rank.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RunLogging:
    """Attach a file handler (the run's output.log) and a console handler to the root logger."""

    def __init__(self, log_file: Path, level: int = logging.INFO, rank: int = 0) -> None:
        self.handlers: list[logging.Handler] = []
        root = logging.getLogger()
        root.setLevel(level)
        tag = "" if rank == 0 else f"[rank {rank}] "
        file_handler = logging.FileHandler(Path(log_file), encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(_FORMAT.replace("%(message)s", tag + "%(message)s")))
        self.handlers.append(file_handler)
        if not any(getattr(h, "_forge_console", False) for h in root.handlers):
            console = logging.StreamHandler(sys.stdout)
            console.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s: {tag}%(message)s", "%H:%M:%S"))
            console._forge_console = True  # type: ignore[attr-defined]
            self.handlers.append(console)
        from forge.runtime.secrets import RedactingFilter

        redactor = RedactingFilter()
        for handler in self.handlers:
            handler.addFilter(redactor)
            if rank != 0:
                handler.setLevel(logging.WARNING)
            root.addHandler(handler)
        # transformers logs through its own logger tree; let it reach our handlers.
        import transformers

        transformers.utils.logging.disable_default_handler()
        transformers.utils.logging.enable_propagation()
        transformers.utils.logging.disable_progress_bar()

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
