"""Many processes (``torchrun``): joining the process group and agreeing across it."""

from __future__ import annotations

import os
from typing import List, Union

import torch
import torch.distributed as dist

__all__ = ["any_process", "setup_distributed", "sum_over_processes"]


def setup_distributed(device: Union[str, torch.device, None] = None):
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``...), if there is one and it is not joined yet: NCCL on GPUs,
    gloo on CPUs. Returns ``(rank, world_size, device)``; ``(0, 1, device)`` when not
    distributed."""
    wanted = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not dist.is_available():
        return 0, 1, wanted
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    if not dist.is_initialized():
        return 0, 1, wanted
    rank, world = dist.get_rank(), dist.get_world_size()
    if wanted.type == "cuda" and wanted.index is None:
        wanted = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(wanted)
    return rank, world, wanted


def any_process(flag: bool, world: int, device: torch.device) -> bool:
    """``flag`` or-ed over the ``world`` processes (itself in one process)."""
    if world == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item() > 0


def sum_over_processes(values: List[float], world: int, device: torch.device) -> List[float]:
    """``values`` summed element-wise over the ``world`` processes, in float64."""
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(world: int) -> None:
    """Wait for every process (nothing in one process)."""
    if world > 1:
        dist.barrier()
