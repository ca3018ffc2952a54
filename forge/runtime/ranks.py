"""Which process this is in a job with several ranks, and how ranks agree.

One `RankContext` per process, read from the environment that launched it: torchrun and
accelerate set `RANK`, `LOCAL_RANK`, `WORLD_SIZE`; `srun` (one SLURM task per rank) sets
`SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_STEP_NUM_TASKS`; anything else is one process. Everything that must
happen once per job (claiming the run directory, writing run files, building caches, fine-tuning a
teacher) goes through it: rank 0 does it, the others wait at a barrier and then read the result.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

_TORCHRUN = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
# SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: a batch script that starts one python process in an
# allocation of several tasks is still one process; only `srun` (a job step) starts several.
_SLURM = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS")


def _int(env: Mapping[str, str], key: str) -> Optional[int]:
    value = env.get(key)
    return int(value) if value not in (None, "") and str(value).strip().isdigit() else None


@dataclass(frozen=True)
class RankContext:
    """rank: global index; local_rank: index on this node (its GPU); world_size: processes in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "RankContext":
        env = os.environ if env is None else env
        for rank_key, local_key, world_key in (_TORCHRUN, _SLURM):
            rank = _int(env, rank_key)
            if rank is None:
                continue
            world, local = _int(env, world_key), _int(env, local_key)
            return cls(rank=rank, local_rank=rank if local is None else local,
                       world_size=max(world if world is not None else rank + 1, 1))
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> Any:
        """This rank's device: `cuda:LOCAL_RANK` when CUDA is there, else the CPU."""
        import torch

        if torch.cuda.is_available():
            return torch.device(f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}")
        return torch.device("cpu")

    def ensure_process_group(self) -> None:
        """Join the job's process group (gloo on CPU, NCCL on GPUs) through accelerate, the same
        state the Trainer uses later; a no-op for one process.

        torchrun exports what torch's `env://` rendezvous reads; `srun` (a SLURM job with several
        tasks, e.g. submitit's `tasks_per_node`) does not, so submitit's helper exports it from
        SLURM's variables first (the first node as master, a port drawn from the job id)."""
        if not self.distributed or _initialized():
            return
        if os.environ.get("RANK") is None:
            from submitit.helpers import TorchDistributedEnvironment

            os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")  # a plain srun: SLURM's own variables
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from accelerate import PartialState

        PartialState()

    def barrier(self) -> None:
        """Wait for every rank (a no-op for one process)."""
        if _initialized():
            import torch.distributed as dist

            dist.barrier()

    def agree_max(self, value: int) -> int:
        """The largest of every rank's `value` (e.g. "has any rank been signalled, and by what")."""
        if not _initialized():
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([int(value)], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            tensor = tensor.to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def share(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (the others' argument is ignored)."""
        if not self.distributed:
            return value
        self.ensure_process_group()
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[bool]:
        """Rank 0 runs the block first (building a cache, fine-tuning a teacher); the others wait at
        a barrier, then run it too and find the result built. Yields whether this rank is main."""
        if not self.is_main:
            self.barrier()
        try:
            yield self.is_main
        finally:
            if self.is_main:
                self.barrier()


def _initialized() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True on rank 0 (or without distributed training): only one process may log a run.

    The environment is checked first (set before any process group exists); an initialised
    torch.distributed group is the authority when there is one.
    """
    if not RankContext.from_env().is_main:
        return False
    if _initialized():
        import torch.distributed as dist

        return dist.get_rank() == 0
    return True
