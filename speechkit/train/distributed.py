"""torchrun / DistributedDataParallel plumbing: process-group setup, rank info, reductions.

``torchrun --nproc_per_node=N python -m speechkit.bin.<stage> ...`` sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads
them and joins the group (nccl on CUDA, gloo on CPU). A plain ``python -m ...`` run is a
world of one and needs none of this.
"""
from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from speechkit.errors import ConfigError
from speechkit.utils.device import checked_device


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run: ``rank`` of ``world_size``, GPU ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes logs, plots and checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (idempotent).

    Returns a world of one when ``WORLD_SIZE`` is unset or 1. The backend is nccl when this
    rank trains on CUDA and gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    if not dist.is_initialized():
        use_cuda = resolve_device(device, local_rank).type == "cuda"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def current_dist_info() -> DistInfo:
    """The :class:`DistInfo` of an initialised process group, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else the CPU; other names as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    resolved = checked_device(device, "train.device (use auto or cpu without a GPU)")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over ranks (a copy; unchanged in a world of one)."""
    values = values.clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one (keeps ranks stopping together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def all_gather_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a CPU tensor (e.g. RNG states), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return [tensor]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, tensor)
    return [t for t in gathered]  # type: ignore[misc]


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
