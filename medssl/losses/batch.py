"""Input checks and the anchor x candidate layout shared by every contrastive loss.

Rows are stacked **view-major** (``[z1_0..z1_{N-1}, z2_0..z2_{N-1}]``); the partner of row ``a`` is
``(a + N) mod 2N``. Candidates are the global batch (every rank's rows when ``torch.distributed`` is
initialised, in rank order, view-major over the global N) followed by the optional queue rows; anchors
are this rank's rows only. Labels are tiled the same way; without labels every subject is its own class
(instance discrimination), so a kernel over these identities is the SimCLR positive mask.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.utils.distributed import gather_with_grad, get_rank, get_world_size

Forward = TypeVar("Forward", bound=Callable[..., Any])


def _device_type(values: Any) -> str:
    for v in values:
        if isinstance(v, Tensor):
            return v.device.type
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], Tensor):
            return v[0].device.type
    return "cpu"


def without_autocast(forward: Forward) -> Forward:
    """Decorator for a loss's ``forward``: autocast off inside, so that the similarities and logits are
    computed in the loss's own dtype (float32, or float64 for float64 inputs) even within a bf16/fp16
    training step. Under autocast a matmul would run in bf16 (logits of +-10 at a resolution of 0.06)
    or overflow in fp16 (masked entries of -1e30)."""

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(_device_type([*args, *kwargs.values()]), enabled=False):
            return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass
class ContrastBatch:
    """Anchors (this rank's ``2n`` rows) against candidates (global ``2N`` rows, then ``M`` queue rows)."""

    candidates: Tensor  # (n_c, d) unit rows in the compute dtype
    anchor_index: Tensor  # (n_a,) column of each anchor among the candidates
    partner_index: Tensor  # (n_a,) column of each anchor's other view
    labels: Tensor  # (n_c, m) labels of the candidates (instance ids when y is None)
    n_subjects: int  # N: subjects in the global batch (2N rows)
    world_size: int

    @property
    def anchors(self) -> Tensor:
        return self.candidates[self.anchor_index]

    @property
    def n_batch(self) -> int:
        return 2 * self.n_subjects

    def column_mask(self, index: Tensor) -> Tensor:
        """``(n_a, n_c)`` bool, True at column ``index[a]`` of row ``a``."""
        cols = torch.arange(self.candidates.shape[0], device=index.device)
        return cols[None, :] == index[:, None]


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 inputs are computed in float32)."""
    return (
        torch.float64
        if any(t is not None and t.dtype == torch.float64 for t in tensors)
        else torch.float32
    )


def check_pair(z1: Tensor, z2: Tensor) -> None:
    """Raise ``ValueError`` unless ``z1``, ``z2`` are both ``(N, d)`` with ``N >= 1``."""
    if not (isinstance(z1, Tensor) and isinstance(z2, Tensor)):
        raise ValueError("z1 and z2 must be tensors of shape (N, d)")
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(
            f"z1 and z2 must both be (N, d) with N >= 1, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )


def as_label_matrix(y: Tensor | None, n: int, name: str = "y") -> Tensor | None:
    """``(N,)`` or ``(N, m)`` labels as ``(N, m)``; ``ValueError`` naming the shapes otherwise."""
    if y is None:
        return None
    y = torch.as_tensor(y)
    if y.ndim not in (1, 2) or y.shape[0] != n or (y.ndim == 2 and y.shape[1] < 1):
        raise ValueError(
            f"{name} must be ({n},) or ({n}, m) to match the embeddings, got {tuple(y.shape)}"
        )
    y = y.reshape(n, -1)
    if y.is_floating_point() and y.dtype not in (torch.float32, torch.float64):
        y = y.float()
    return y


def gather_rows(x: Tensor, gather: bool) -> Tensor:
    """``x`` from every rank concatenated in rank order (differentiable), or ``x`` when not gathering."""
    if not gather or get_world_size() == 1:
        return x
    if x.dtype == torch.bool:
        return gather_with_grad(x.to(torch.uint8)).bool()
    return gather_with_grad(x)


def _offset(n: int, device: torch.device, gather: bool) -> tuple[int, int]:
    """(rows of lower ranks, global N)."""
    if not gather or get_world_size() == 1:
        return 0, n
    sizes = gather_with_grad(torch.tensor([n], device=device)).tolist()
    return sum(sizes[: get_rank()]), sum(sizes)


def build_batch(
    z1: Tensor,
    z2: Tensor,
    y: Tensor | None,
    *,
    queue_z: Tensor | None = None,
    queue_y: Tensor | None = None,
    gather: bool = True,
) -> ContrastBatch:
    """Normalise, gather (when distributed), append the queue and tile the labels.

    Args:
        z1, z2: ``(n, d)`` local views. y: ``(n,)``/``(n, m)`` labels or None (instance identities).
        queue_z: ``(M, d)`` extra candidates (never anchors); queue_y: their ``(M,)``/``(M, m)`` labels,
            required when ``y`` is given. The queue is assumed identical on every rank (MoCo keeps it so).
        gather: gather embeddings and labels from all ranks when ``torch.distributed`` is initialised.
    """
    check_pair(z1, z2)
    n, d = z1.shape
    dtype = compute_dtype(z1, z2, queue_z)
    ym = as_label_matrix(y, n)
    offset, n_glob = _offset(n, z1.device, gather)
    if ym is None:  # instance discrimination: subject i is its own class
        ym = torch.arange(offset, offset + n, device=z1.device).reshape(n, 1)
    rows = torch.cat(
        [gather_rows(F.normalize(z.to(dtype), dim=1), gather) for z in (z1, z2)]
    )
    labels = gather_rows(ym, gather).repeat(2, 1)
    if queue_z is not None:
        qz, qy = _check_queue(queue_z, queue_y, d, y is not None, ym)
        rows = torch.cat([rows, F.normalize(qz.to(dtype), dim=1)])
        if qy is None:  # unlabelled queue rows: classes of their own (negatives)
            qy = -1 - torch.arange(qz.shape[0], device=qz.device).reshape(-1, 1)
        labels = torch.cat(
            [
                labels.to(torch.promote_types(labels.dtype, qy.dtype)),
                qy.to(torch.promote_types(labels.dtype, qy.dtype)),
            ]
        )
    local = torch.arange(offset, offset + n, device=z1.device)
    anchor_index = torch.cat([local, local + n_glob])
    partner_index = torch.cat([local + n_glob, local])
    return ContrastBatch(
        rows,
        anchor_index,
        partner_index,
        labels,
        n_glob,
        get_world_size() if gather else 1,
    )


def _check_queue(
    queue_z: Tensor, queue_y: Tensor | None, d: int, labelled: bool, ym: Tensor
) -> tuple[Tensor, Tensor | None]:
    if queue_z.ndim != 2 or queue_z.shape[1] != d:
        raise ValueError(
            f"queue_z must be (M, {d}) to match the embeddings (N, {d}), got {tuple(queue_z.shape)}"
        )
    if not labelled:
        return queue_z, None
    if queue_y is None:
        raise ValueError(
            "queue_y (M,) or (M, m) is required with queue_z when y is given"
        )
    qy = as_label_matrix(queue_y, queue_z.shape[0], "queue_y")
    assert qy is not None
    if qy.shape[1] != ym.shape[1]:
        raise ValueError(
            f"queue_y has {qy.shape[1]} label dimensions but y has {ym.shape[1]}: shapes {tuple(queue_y.shape)} vs y"
        )
    return queue_z, qy
