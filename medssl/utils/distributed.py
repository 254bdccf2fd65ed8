"""Process-group helpers and a differentiable all-gather (no-ops in a single process).

Gradient convention (used by every loss in :mod:`medssl.losses`): ``gather_with_grad`` concatenates the
rank-ordered local tensors; its backward all-reduces (sums) the incoming gradient over ranks and hands
each rank the slice of the rows it owns. A loss computed on rank r as
``world_size * sum_{local anchors} l_a / n_global_anchors`` then gives every input embedding the gradient
``world_size * dL/dz`` of the single-process loss ``L`` on the concatenated batch, and DDP's average of
the parameter gradients over ranks equals the single-process gradient exactly.

Hand-rolled note: ``torch.distributed.nn.functional.all_gather`` needs equal shapes on every rank and its
backward relies on collectives that not every backend offers; this 30-line Function accepts ranks with
different batch sizes (the last batch of an epoch) and only uses ``all_gather`` / ``all_reduce``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _all_gather_rows(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenate the ``(n_r, ...)`` tensors of every rank (padded to the largest ``n_r`` for transport)."""
    n_max = max(sizes)
    padded = x.new_zeros((n_max, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        sizes = _gather_sizes(x.shape[0], x.device)
        rank = get_rank()
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(
            grad, op=dist.ReduceOp.SUM
        )  # every rank's loss may depend on our rows
        return grad[ctx.start : ctx.stop]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` ``(n_r, ...)`` from every rank into ``(sum_r n_r, ...)``, in rank order.

    Differentiable: the backward sums the gradients of all ranks and returns the rows this rank owns.
    Ranks may hold different ``n_r`` (trailing dimensions must agree). A no-op (returns ``x``) when not
    distributed or with one process. Tensors without gradient (labels) are gathered the same way.
    """
    if not is_distributed() or get_world_size() == 1:
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)
    return _all_gather_rows(x, _gather_sizes(x.shape[0], x.device))
