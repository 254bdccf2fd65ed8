"""Batch diagnostics for tuning sigma and tau, and a bandwidth rule of thumb for sigma.

- [0] Wang & Isola, Understanding Contrastive Representation Learning through Alignment and Uniformity
  on the Hypersphere, ICML 2020, https://arxiv.org/abs/2005.10242
- [1] Scott, Multivariate Density Estimation, 1992; Silverman, Density Estimation, 1986 (the factors
  are those of ``scipy.stats.gaussian_kde``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medssl.losses.batch import build_batch
from medssl.losses.kernels import DiracKernel, KernelLike, SigmaLike, resolve_kernel


def effective_positives(wn: Tensor) -> Tensor:
    """``1 / sum_b Wn_ab^2`` per anchor for row-normalised weights ``Wn`` ``(A, B)``; 0 without positive.

    Equals |P(a)| for uniform weights over P(a) (SupCon) and 1 for SimCLR.
    """
    sq = wn.square().sum(1)
    return torch.where(
        sq > 0, 1.0 / sq.clamp_min(torch.finfo(wn.dtype).tiny), torch.zeros_like(sq)
    )


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """Wang & Isola alignment ``E ||f(x) - f(x+)||_2^alpha`` over the N positive pairs (unit rows)."""
    return (
        (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean()
    )


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """Wang & Isola uniformity ``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)`` of ``z`` ``(N, d)`` (unit rows).

    The lecture writes ``log 1/N^2 sum_{i,j}``, which includes the N pairs i = j (each exp(0) = 1):
    its values are higher (e.g. -1.69 against -3.01 on the same features), so compare like with like.
    """
    return torch.pdist(F.normalize(z, dim=1)).square().mul(-t).exp().mean().log()


@torch.no_grad()
def contrastive_diagnostics(
    z1: Tensor,
    z2: Tensor,
    y: Tensor | None = None,
    kernel: KernelLike = "rbf",
    sigma: SigmaLike | None = 5.0,
) -> dict[str, float]:
    """Per-batch figures of the 2N view-major rows (single process, no gathering).

    Returns ``eff_positives`` (mean over anchors of ``1/sum Wn^2`` with row-normalised kernel weights),
    ``pos_sim`` (mean of ``sum_b Wn_ab cos_ab``), ``neg_sim`` (cosines weighted by ``max(1 - K_ab, 0)``),
    ``alignment`` (alpha = 2) and ``uniformity`` (t = 2, mean of the two views). Without ``y`` positives
    are the other views. ``sigma`` is in the units of ``y``.
    """
    batch = build_batch(z1.detach(), z2.detach(), y, gather=False)
    kern = resolve_kernel(kernel, sigma) if y is not None else DiracKernel()
    cos = batch.anchors @ batch.candidates.T
    own = batch.column_mask(batch.anchor_index)
    k = (
        kern(batch.labels[batch.anchor_index], batch.labels)
        .to(cos.dtype)
        .masked_fill(own, 0.0)
    )
    wn = k / k.sum(1, keepdim=True).clamp_min(torch.finfo(cos.dtype).tiny)
    neg = (1 - k).clamp_min(0).masked_fill(own, 0.0)
    return {
        "eff_positives": float(effective_positives(wn).mean()),
        "pos_sim": float((wn * cos).sum(1).mean()),
        "neg_sim": float(
            (neg * cos).sum() / neg.sum().clamp_min(torch.finfo(cos.dtype).tiny)
        ),
        "alignment": float(alignment(z1.detach().float(), z2.detach().float())),
        "uniformity": float(
            (uniformity(z1.detach().float()) + uniformity(z2.detach().float())) / 2
        )
        if z1.shape[0] > 1
        else float("nan"),
    }


def suggest_sigma(
    y: Tensor | np.ndarray | Sequence[float], rule: str = "scott"
) -> float | list[float]:
    """Kernel bandwidth from the label distribution, in the units of ``y`` (years for age).

    ``scott``: ``std * n^(-1/(m+4))``; ``silverman``: ``std * (n (m+2) / 4)^(-1/(m+4))`` (sample std per
    dimension, ``m`` = dimensions of ``y``). Pass the training labels, not one batch. For OpenBHB ages
    (std about 15 years, n about 3000) Scott gives about 3 years, between the published 2 and 5.

    Returns:
        A float for ``(n,)`` labels, a list of m floats (one per dimension) for ``(n, m)``.
    Raises:
        ValueError: fewer than 2 labels, non-finite values, a constant dimension, or an unknown rule.
    """
    arr = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y, dtype=np.float64)
    flat = arr.ndim == 1
    arr = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    n, m = arr.shape
    if n < 2 or not np.isfinite(arr).all():
        raise ValueError(
            f"suggest_sigma needs >= 2 finite labels, got shape {arr.shape}"
        )
    std = arr.std(axis=0, ddof=1)
    if (std <= 0).any():
        raise ValueError(
            f"labels are constant along dimension(s) {np.flatnonzero(std <= 0).tolist()}"
        )
    if rule == "scott":
        factor = n ** (-1.0 / (m + 4))
    elif rule == "silverman":
        factor = (n * (m + 2) / 4.0) ** (-1.0 / (m + 4))
    else:
        raise ValueError(f"rule must be 'scott' or 'silverman', got {rule!r}")
    sigma = (factor * std).tolist()
    return float(sigma[0]) if flat else [float(v) for v in sigma]
