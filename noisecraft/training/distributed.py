"""Data-parallel training under ``torchrun`` (``python -m torch.distributed.run``).

torchrun starts one process per device and tells each its place through the environment variables ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous). Without them the
trainer runs as a single process and every helper here degrades to a no-op, so the training loop has one code path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. ``owns_group``: this module created the process group and must destroy it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables; ``(0, 1, 0)`` when absent."""
    environ = os.environ if environ is None else environ
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    present = [name for name in names if name in environ]
    if not present:
        return 0, 1, 0
    if len(present) != len(names):
        missing = sorted(set(names) - set(present))
        raise ValueError(
            f"incomplete distributed environment: {', '.join(present)} set but {', '.join(missing)} missing; "
            "launch with `python -m torch.distributed.run --nproc_per_node N script.py` or unset these variables"
        )
    try:
        rank, world_size, local_rank = (int(environ[name]) for name in names)
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"inconsistent distributed environment: RANK={rank}, WORLD_SIZE={world_size}, "
                         f"LOCAL_RANK={local_rank}")
    return rank, world_size, local_rank


def init_distributed(device: str | torch.device | None = None) -> DistributedContext:
    """Join the torchrun job (if any) and pick this process's device.

    ``device=None`` means ``cuda:LOCAL_RANK`` when CUDA is available, else CPU. The backend follows the device:
    NCCL for CUDA, gloo for CPU. An already initialised process group (set up by the caller) is reused, not owned.
    """
    rank, world_size, local_rank = launch_env()
    if world_size > 1 and not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    already_initialized = dist.is_available() and dist.is_initialized()
    if already_initialized:
        rank, world_size = dist.get_rank(), dist.get_world_size()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available; use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = False
    if world_size > 1 and not already_initialized:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size)
        owns_group = True
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                              owns_group=owns_group)


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (already on ``context.device``); the model itself when single."""
    if not context.is_distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile and DDP wrappers (state_dict keys without ``_orig_mod.`` or
    ``module.`` prefixes)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """In place sum over ranks (returns ``tensor`` for chaining)."""
    if context.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """``[obj from rank 0, obj from rank 1, ...]`` on every rank (picklable objects)."""
    if not context.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def shutdown_distributed(context: DistributedContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if context.owns_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
