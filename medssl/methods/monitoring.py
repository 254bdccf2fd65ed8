"""Collapse monitoring for non-contrastive methods: embedding spread and effective rank.

Two cheap statistics of a batch of embeddings ``z`` (N, d), computed without gradients:

- ``std``: the mean over dimensions of the per-dimension standard deviation of the
  L2-normalised embeddings (SimSiam, Sec. 4.1). A collapsed encoder (constant output) gives 0;
  embeddings spread isotropically on the sphere give about ``1 / sqrt(d)``.
- ``rank``: the effective rank of ``z`` (RankMe): with singular values ``s_k`` of ``z``,
  ``p_k = s_k / sum(s) + eps`` and ``rank = exp(-sum_k p_k log p_k)``, between 1 (all embeddings
  on one line) and ``min(N, d)`` (equal singular values). Dimensional collapse lowers it.

References:
    - [0] Chen & He, SimSiam, CVPR 2021, https://arxiv.org/abs/2011.10566
    - [1] Roy & Vetterli, The effective rank, EUSIPCO 2007
    - [2] Garrido et al., RankMe, ICML 2023, https://arxiv.org/abs/2210.02885
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of the L2-normalised rows of ``z`` (N, d); 0 if collapsed."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embedding_std needs (N >= 2, d) embeddings, got shape {tuple(z.shape)}")
    return F.normalize(z.float(), dim=1).std(dim=0).mean()


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Effective rank ``exp(H(p))`` of ``z`` (N, d), ``p`` the normalised singular values."""
    if z.ndim != 2:
        raise ValueError(f"effective_rank needs (N, d) embeddings, got shape {tuple(z.shape)}")
    s = torch.linalg.svdvals(z.float())
    p = s / s.sum().clamp_min(eps) + eps
    return torch.exp(-(p * p.log()).sum())


class CollapseMonitor:
    """Computes ``{"std", "rank"}`` for a batch and warns when the spread collapses.

    Args:
        threshold: warn when ``std * sqrt(d) < threshold``, i.e. the spread is below this
            fraction of an isotropic embedding's ``1 / sqrt(d)``. 0 disables the warning.

    Examples:
        >>> monitor = CollapseMonitor(threshold=0.1)
        >>> stats = monitor(torch.randn(8, 16))
        >>> sorted(stats)
        ['rank', 'std']
    """

    def __init__(self, threshold: float = 0.1) -> None:
        if threshold < 0:
            raise ValueError(f"collapse threshold must be >= 0, got {threshold}")
        self.threshold = threshold

    def __call__(self, z: torch.Tensor, name: str = "embeddings") -> dict[str, torch.Tensor]:
        std = embedding_std(z)
        rank = effective_rank(z)
        relative = float(std) * math.sqrt(z.shape[1])
        if relative < self.threshold:
            warnings.warn(
                f"possible representation collapse: the per-dimension std of the L2-normalised "
                f"{name} is {float(std):.3g} = {relative:.3g}/sqrt(d) (d={z.shape[1]}), below "
                f"{self.threshold}/sqrt(d); effective rank {float(rank):.3g}. Check the learning "
                f"rate, the predictor/EMA settings or the augmentations.",
                RuntimeWarning,
                stacklevel=2,
            )
        return {"std": std, "rank": rank}
