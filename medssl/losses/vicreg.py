"""VICReg: variance, invariance and covariance regularisation of two views' embeddings.

For ``z1``, ``z2`` (N, d), with ``std_j = sqrt(Var_j(z) + eps)`` (unbiased variance over the batch)
and ``Cov(z) = (z - mean)^T (z - mean) / (N - 1)``:

    invariance  s = (1 / (N d)) sum_n ||z1_n - z2_n||^2
    variance    v = (1/2) [mean_j relu(gamma - std_j(z1)) + mean_j relu(gamma - std_j(z2))]
    covariance  c = (1/d) [sum_{i != j} Cov(z1)_ij^2 + sum_{i != j} Cov(z2)_ij^2]
    L = sim_coeff * s + std_coeff * v + cov_coeff * c

with the paper's coefficients 25 / 25 / 1 and gamma = 1 (as the authors' code computes it).

References:
    - [0] Bardes, Ponce & LeCun, VICReg, ICLR 2022, https://arxiv.org/abs/2105.04906
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses.barlow_twins import check_pair
from medssl.losses.batch import gather_rows, without_autocast
from medssl.registry import LOSSES


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the per-dimension std: ``mean_j relu(gamma - sqrt(Var_j(z) + eps))``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances divided by d: ``(1/d) sum_{i!=j} Cov_ij^2``."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


@LOSSES.register("vicreg")
class VICRegLoss(nn.Module):
    """VICReg loss with its three terms; ``terms(z1, z2)`` returns them for logging.

    Args:
        sim_coeff: weight of the invariance (MSE) term (paper: 25).
        std_coeff: weight of the variance hinge (paper: 25).
        cov_coeff: weight of the covariance term (paper: 1).
        gamma: target std of every dimension (paper: 1).
        eps: added to the variance inside the square root.
        gather: under torch.distributed, compute every term over the batch of all ranks (the global
            loss on every rank; inputs receive ``world_size`` x the single-process gradient, which
            DDP's average makes exact).

    Shapes: ``z1``, ``z2`` (N, d) -> scalar; ``y``/``bias`` are accepted and ignored.

    Examples:
        >>> loss = VICRegLoss()
        >>> float(loss.terms(3 * torch.randn(256, 4), torch.randn(256, 4))["variance"]) < 0.1
        True
    """

    def __init__(
        self,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.gather = bool(gather)
        for key, value in (("sim_coeff", sim_coeff), ("std_coeff", std_coeff),
                           ("cov_coeff", cov_coeff), ("gamma", gamma)):
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{key} must be >= 0, got {value}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff
        self.gamma, self.eps = gamma, eps

    def extra_repr(self) -> str:
        return (f"sim_coeff={self.sim_coeff}, std_coeff={self.std_coeff}, "
                f"cov_coeff={self.cov_coeff}, gamma={self.gamma}, eps={self.eps}")

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted ``invariance``, ``variance`` and ``covariance`` terms (scalars), over the
        batch gathered from every rank when ``gather`` (as the authors' ``FullGatherLayer``)."""
        z1, z2 = gather_rows(z1, self.gather), gather_rows(z2, self.gather)
        check_pair(z1, z2, "vicreg")
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        return {
            "invariance": F.mse_loss(z1, z2),
            "variance": 0.5 * (variance_term(z1, self.gamma, self.eps)
                               + variance_term(z2, self.gamma, self.eps)),
            "covariance": covariance_term(z1) + covariance_term(z2),
        }

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance``."""
        return (self.sim_coeff * terms["invariance"] + self.std_coeff * terms["variance"]
                + self.cov_coeff * terms["covariance"])

    @without_autocast
    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        y: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.combine(self.terms(z1, z2))
