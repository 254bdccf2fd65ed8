"""MoCo-style memory queue: past key embeddings and their labels as extra contrastive candidates.

For users limited to small 3D batches. The query network is ``backbone -> head``; the key network is
an EMA copy (momentum cosine ``momentum_base -> momentum_end``, MoCo v3 style). Each step, with
views v1, v2, queries ``q_i`` and keys ``k_i = key_net(v_i)`` (no gradient), the configured
contrastive loss is evaluated symmetrically,

    L = 1/2 [ loss(q1, k2, y, bias, queue_z=Q, queue_y=Q_y)
            + loss(q2, k1, y, bias, queue_z=Q, queue_y=Q_y) ]

where the queue (Q, Q_y) holds the keys and labels of the last ``queue_size`` samples (FIFO) and
enters the loss as candidates that are never anchors (kernel-weighted positives when labels are
given, negatives otherwise; see ``medssl.losses.batch``). Both views' keys are then enqueued. Under
``torch.distributed`` the keys of every process are gathered before enqueueing, so the queue is the
same everywhere. MoCo's shuffled BatchNorm for the key network is not implemented.

How this differs from MoCo's own loss (He et al., Alg. 1): there, only the queries are anchors and the
candidates are keys (the positive and the queue). Here the configured loss runs view-major over the
stacked ``[q; k]`` as every siamese loss does, so the (stop-gradient) keys are anchors too and the other
queries are candidates: SimCLR-style on (q, k) plus the queue, not MoCo's cross-entropy. Without labels,
a subject's own key from an earlier step can still sit in the queue as a negative when the queue holds
a large share of the cohort (about 20 % of anchors with 3,227 subjects, batch 16, queue 4,096); with
labels (y-aware, SupCon) it is a positive, as it should be.

References:
    - [0] He et al., MoCo, CVPR 2020, https://arxiv.org/abs/1911.05722
    - [1] Chen, Xie & He, MoCo v3, ICCV 2021, https://arxiv.org/abs/2104.02057
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from medssl.utils.distributed import gather_with_grad
from medssl.errors import ConfigError
from medssl.methods.base import Method
from medssl.methods.common import as_output, check_views, head_out_dim, main_loss
from medssl.models.momentum import cosine_schedule, momentum_copy, update_momentum
from medssl.registry import METHODS


class MemoryQueue(nn.Module):
    """A FIFO of the last ``size`` embeddings (and labels); saved in checkpoints as buffers.

    Args:
        size: capacity M.
        dim: embedding size d.
        label_dim: label columns m (0 = no labels kept).

    ``z`` (n, d) and ``y`` (n, m) or None return the stored rows, oldest first, n = min(seen, M).
    """

    def __init__(self, size: int, dim: int, label_dim: int = 1) -> None:
        super().__init__()
        if size < 1 or dim < 1 or label_dim < 0:
            raise ValueError(
                f"need size >= 1, dim >= 1, label_dim >= 0; got {size}, {dim}, {label_dim}")
        self.size, self.dim, self.label_dim = size, dim, label_dim
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("labels", torch.zeros(size, label_dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to write
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # rows written so far

    def __len__(self) -> int:
        return int(min(int(self.count), self.size))

    def _ordered(self, table: torch.Tensor) -> torch.Tensor:
        # copies, never views: the loss may save them for backward before the next enqueue
        if int(self.count) < self.size:
            return table[: int(self.count)].clone()
        return torch.roll(table, -int(self.ptr), dims=0)

    @property
    def z(self) -> torch.Tensor:
        return self._ordered(self.embeddings)

    @property
    def y(self) -> torch.Tensor | None:
        if self.label_dim == 0:
            return None
        labels = self._ordered(self.labels)
        return labels[:, 0] if self.label_dim == 1 else labels

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Append rows ``z`` (B, d) and labels ``y`` (B,)/(B, m), overwriting the oldest."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"queue rows must be (B, {self.dim}), got {tuple(z.shape)}")
        if self.label_dim and y is None:
            raise ValueError("this queue keeps labels: pass y")
        z = gather_with_grad(z.detach().to(self.embeddings.dtype))
        rows = torch.arange(z.shape[0], device=z.device)
        if z.shape[0] > self.size:  # keep only the newest rows
            z, rows = z[-self.size:], rows[-self.size:] - (z.shape[0] - self.size)
        index = (int(self.ptr) + rows) % self.size
        self.embeddings[index] = z
        if self.label_dim:
            assert y is not None
            labels = gather_with_grad(y.detach().float().reshape(-1, self.label_dim))
            self.labels[index] = labels[-z.shape[0]:]
        self.ptr.fill_((int(self.ptr) + z.shape[0]) % self.size)
        self.count.add_(z.shape[0])


def accepts_queue(loss: nn.Module) -> bool:
    """True when ``loss.forward`` takes the ``queue_z``/``queue_y`` keywords."""
    params = inspect.signature(loss.forward).parameters
    return "queue_z" in params and "queue_y" in params


@METHODS.register("moco")
class MoCo(Method):
    """Momentum key encoder + memory queue around a configured contrastive loss.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported (query) encoder.
        head: projector (B, F) -> (B, d).
        loss: the contrastive objective; its main loss must accept ``queue_z``/``queue_y``
            (the kernel-weighted InfoNCE family: infonce, supcon, yaware, ...).
        queue_size: M, number of past keys kept (MoCo: 65536; a few thousand for 3D cohorts).
        momentum_base: key-encoder momentum at step 0 (MoCo v3: 0.99), cosine to ``momentum_end``.
        momentum_end: momentum at the last step (1.0; equal values give MoCo v2's constant).
        label: batch key fed as ``y`` and stored with the keys (None: unlabelled queue).
        bias: batch key fed as ``bias`` (for a regulariser such as FairKL).
        label_dim: columns of the label (1 for age).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module | None = None,
        queue_size: int = 4096,
        momentum_base: float = 0.99,
        momentum_end: float = 1.0,
        label: str | None = None,
        bias: str | None = None,
        label_dim: int = 1,
    ) -> None:
        super().__init__()
        if loss is None:
            raise ConfigError("method 'moco' needs a contrastive loss, e.g. 'loss: {name: yaware}'")
        if not accepts_queue(main_loss(loss)) or not accepts_queue(loss):  # type: ignore[arg-type]
            raise ConfigError(
                f"loss {type(main_loss(loss)).__name__} does not take queue_z/queue_y, so it "
                f"cannot use the MoCo memory queue; use one of the InfoNCE-family losses"
            )
        if not 0.0 <= momentum_base <= momentum_end <= 1.0:
            raise ValueError(f"need 0 <= momentum_base <= momentum_end <= 1, got "
                             f"{momentum_base}, {momentum_end}")
        self.backbone, self.head, self.loss = backbone, head, loss
        self.key_backbone, self.key_head = momentum_copy(backbone), momentum_copy(head)
        self.label, self.bias = label, bias
        dim = head_out_dim(head, backbone.num_features)
        self.queue = MemoryQueue(queue_size, dim, label_dim if label else 0)
        self.momentum_base, self.momentum_end = momentum_base, momentum_end
        self.register_buffer("momentum", torch.tensor(momentum_base))


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_views(views, "moco")
        q1, q2 = (self.head(self.backbone(v)) for v in views[:2])
        with torch.no_grad():
            k1, k2 = (self.key_head(self.key_backbone(v)) for v in views[:2])
        y = batch[self.label] if self.label else None
        bias = batch[self.bias] if self.bias else None
        queue = {} if len(self.queue) == 0 else {"queue_z": self.queue.z, "queue_y": self.queue.y}
        halves = [as_output(self.loss(q, k, y, bias, **queue)) for q, k in ((q1, k2), (q2, k1))]
        out = {key: (halves[0][key] + halves[1][key]) / 2 for key in halves[0]}
        self.queue.enqueue(torch.cat([k1, k2]), None if y is None else torch.cat([y, y]))
        out["queue_len"] = torch.tensor(float(len(self.queue)))
        out["momentum"] = self.momentum.clone()
        return out

    def on_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the key network with the momentum of ``step``."""
        tau = cosine_schedule(step, total_steps, self.momentum_base, self.momentum_end)
        self.momentum.fill_(tau)
        update_momentum(self.backbone, self.key_backbone, tau)
        update_momentum(self.head, self.key_head, tau)
