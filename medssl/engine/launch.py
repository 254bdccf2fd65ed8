"""Process-group set-up for ``torchrun --nproc-per-node K medssl pretrain ...`` (DDP)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed_from_env(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns ``(rank, world_size, device)``; with CUDA each rank takes GPU ``LOCAL_RANK``. NCCL is used
    on GPUs, gloo on CPU. Without ``WORLD_SIZE > 1`` nothing happens: ``(0, 1, device)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def wait_for_every_rank() -> None:
    """Block until every rank reaches this call (a no-op single-process), e.g. at the end of a run, so that
    no rank closes its connections while a peer is still writing or talking to it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the process group (a no-op when single-process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
