"""Random streams drawn from their own seeds, so that what a run draws depends on its config alone.

Why: a run's RNG used to be one global stream, so anything that consumed random numbers before the
student was built (a cold cache converting a packaged model, a teacher fine-tuned first) changed
the student's initialisation. Each stream now starts from its own seed inside `seeded`, which leaves
the caller's RNG where it was.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator, Optional


def derived_seed(seed: int, stream: str) -> int:
    """A seed for a named stream (`"loss_projections"`), stable across processes and Python versions
    (unlike `hash()`), different for different streams of the same run seed."""
    digest = hashlib.sha256(f"forge:{stream}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: Optional[int]) -> Iterator[None]:
    """Draw from `seed` (torch's CPU generator, and this process's GPU) inside the block, without
    moving the caller's RNG. None draws from the caller's RNG as it is."""
    if seed is None:
        yield
        return
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []  # this rank's GPU, if any
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
