"""Which process speaks for a multi-process job: logging, requeueing and run files are rank 0's."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True on rank 0 (or without distributed training): only one process may log a run.

    `RANK` is set by torchrun/accelerate/SLURM wrappers before any process group exists, so it is
    checked first; an initialised torch.distributed group is the authority when there is one.
    """
    for variable in ("RANK", "SLURM_PROCID"):  # SLURM_PROCID: one srun task per rank, no RANK yet
        rank = os.environ.get(variable)
        if rank not in (None, "") and rank.strip() != "0":
            return False
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return False
    except ImportError:  # torch is a hard dependency, but this check must not need it
        pass
    return True
