"""Barlow Twins: push the cross-correlation matrix of two views' embeddings to the identity.

Each embedding dimension is standardised over the batch (mean 0, biased std 1, as a BatchNorm
without affine), ``C = Z1_hat^T Z2_hat / N`` (d, d), and

    L = sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2        (seed eq. 26)

References:
    - [0] Zbontar et al., Barlow Twins, ICML 2021, https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses.batch import gather_rows, without_autocast
from medssl.registry import LOSSES


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension batch standardisation of ``z`` (N, d): ``(z - mean) / sqrt(var + eps)``."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``C = standardize(z1)^T standardize(z2) / N``, shape (d, d), entries in [-1, 1]."""
    return standardize(z1, eps).T @ standardize(z2, eps) / z1.shape[0]


def check_pair(z1: torch.Tensor, z2: torch.Tensor, who: str) -> None:
    """Raise ``ValueError`` unless ``z1`` and ``z2`` are equal-shape (N >= 2, d) matrices."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"{who} needs two (N, d) embeddings of the same shape, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError(f"{who} needs a batch of at least 2 (per-dimension statistics)")


@LOSSES.register("barlow_twins")
class BarlowTwinsLoss(nn.Module):
    """Barlow Twins redundancy-reduction loss.

    Args:
        lambda_offdiag: weight of the off-diagonal (redundancy) term; the paper's 5e-3.
        eps: added to the variance before standardising.
        gather: gather the embeddings of every rank under torch.distributed (see below).

    Shapes: ``z1``, ``z2`` (N, d) -> scalar. ``y`` and ``bias`` are accepted for the loss contract
    and ignored. Computed in float32 or better.

    Distributed (``gather=True``): the embeddings of every rank are gathered (differentiably) before
    standardising, so C is the global batch's cross-correlation, as the authors' all-reduce of C gives;
    every rank returns the global loss (inputs receive ``world_size`` x the single-process gradient and
    DDP's average is exact, as for medssl's other losses).

    Examples:
        >>> z = torch.randn(64, 8)
        >>> float(BarlowTwinsLoss()(z, z)) < float(BarlowTwinsLoss()(z, torch.randn(64, 8)))
        True
    """

    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)
        if not lambda_offdiag >= 0:  # also refuses NaN
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.lambda_offdiag = lambda_offdiag
        self.eps = eps

    def extra_repr(self) -> str:
        return f"lambda_offdiag={self.lambda_offdiag}, eps={self.eps}"

    @without_autocast
    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        y: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        z1, z2 = gather_rows(z1, self.gather), gather_rows(z2, self.gather)
        check_pair(z1, z2, "barlow_twins")
        dtype = torch.promote_types(z1.dtype, torch.float32)
        c = cross_correlation(z1.to(dtype), z2.to(dtype), self.eps)
        diag = torch.diagonal(c)
        on_diag = (1.0 - diag).pow(2).sum()
        off_diag = c.pow(2).sum() - diag.pow(2).sum()
        return on_diag + self.lambda_offdiag * off_diag
