"""The symmetric prediction losses of BYOL and SimSiam (self-distillation without negatives).

With online predictions ``p1 = q(z1)``, ``p2 = q(z2)`` and targets ``t1``, ``t2`` (the
target/teacher projections of the same two views), both treated as constants (stop-gradient), and
``cos(a, b) = <a, b> / (||a|| ||b||)`` averaged over the batch:

    normalized_mse  (BYOL, seed eq. 17): 1/2 ||p1^ - t2^||^2 + 1/2 ||p2^ - t1^||^2
                                        = 2 - cos(p1, t2) - cos(p2, t1)     (0 when p = t)
    negative_cosine (SimSiam, seed eq. 18): -cos(p1, t2) - cos(p2, t1)     (-2 when p = t)

The two differ by the constant 2, so their gradients are identical.

References:
    - [0] Grill et al., BYOL, NeurIPS 2020, https://arxiv.org/abs/2006.07733
    - [1] Chen & He, SimSiam, CVPR 2021, https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses.batch import without_autocast


def mean_cosine(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``cos(p_n, t_n)`` for (N, d) inputs, with ``t`` detached (stop-gradient)."""
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(
            f"prediction and target must be (N, d) of the same shape, got {tuple(p.shape)} "
            f"and {tuple(t.shape)}"
        )
    dtype = torch.promote_types(p.dtype, torch.float32)
    return F.cosine_similarity(p.to(dtype), t.detach().to(dtype), dim=1).mean()


class BYOLLoss(nn.Module):
    """Symmetric prediction loss; ``kind`` picks BYOL's normalised MSE or SimSiam's negative cosine.

    Args:
        kind: ``"normalized_mse"`` (BYOL, minimum 0) or ``"negative_cosine"`` (SimSiam, minimum -2).

    Shapes: ``forward(p1, p2, t1, t2)``, all (N, d) -> scalar. Targets are detached inside.

    Examples:
        >>> p = torch.randn(4, 8)
        >>> round(float(BYOLLoss("negative_cosine")(p, p, p, p)), 6)
        -2.0
    """

    def __init__(
        self, kind: Literal["normalized_mse", "negative_cosine"] = "normalized_mse"
    ) -> None:
        super().__init__()
        if kind not in ("normalized_mse", "negative_cosine"):
            raise ValueError(f"kind must be 'normalized_mse' or 'negative_cosine', got {kind!r}")
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"

    @without_autocast
    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor
    ) -> torch.Tensor:
        agreement = mean_cosine(p1, t2) + mean_cosine(p2, t1)
        offset = 2.0 if self.kind == "normalized_mse" else 0.0
        return offset - agreement
