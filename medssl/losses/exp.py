"""L_exp: kernel-weighted contrastive regression loss whose repulsion decays with label similarity.

- [0] Barbano et al., Contrastive learning for regression in multi-site brain age prediction,
  ISBI 2023, https://arxiv.org/abs/2211.08326
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from medssl.losses.batch import ContrastBatch
from medssl.losses.core import NEG, KernelRegressionLoss, masked_logsumexp
from medssl.losses.kernels import KernelLike, SigmaLike
from medssl.registry import LOSSES


@LOSSES.register("exp")
class ExpKernelLoss(KernelRegressionLoss):
    """L_exp with row-normalised weights ``Wn_ak = K_ak / sum_{c != a} K_ac``.

    ``variant="paper"`` (the seed's formula):
    ``l_a = -sum_{k != a} Wn_ak [s_ak - log sum_{t not in {a, k}} exp(s_at (1 - K_at))]``
    (``exclude_positive=False`` keeps t = k in the sum).
    ``variant="code"`` (produced the published OpenBHB numbers): ``l_ab = s_ab - max_c s_ac`` (row max,
    diagonal included, detached as in the authors' code),
    ``l_a = -sum_{p != a} Wn_ap [l_ap - log sum_{t != a} exp(l_at (1 - K_at))]``.

    The leave-one-out sums are computed in O(N^2) without cancellation (see ``log_terms``).
    Published defaults (Barbano 2023, OpenBHB): rbf kernel, sigma = 2 (years), tau = 0.1,
    ``variant="code"``, ``base_temperature=0.07``, batch 32, ResNet-18-3D.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: SigmaLike | None = None,
        kernel: KernelLike = "rbf",
        variant: str = "paper",
        exclude_positive: bool = True,
        base_temperature: float | None = None,
        reduction: str = "mean",
        gather: bool = True,
    ) -> None:
        super().__init__(temperature, sigma, kernel, variant, base_temperature, reduction, gather)
        self.exclude_positive = bool(exclude_positive)

    def _repr_keys(self) -> list[str]:
        return [*super()._repr_keys(), "exclude_positive"]

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        own = batch.column_mask(batch.anchor_index)
        if self.variant == "code":
            s = s - s.max(1, keepdim=True).values.detach()
        e = s * (1 - w)
        if self.variant == "code" or not self.exclude_positive:
            return (
                s,
                masked_logsumexp(e, ~own, 1, keepdim=True),
                (~own).any(1, keepdim=True),
            )
        # log sum_{t not in {a, k}} = log(total - e^{x_k}) = total + log1p(-e^{x_k - total}); the ratio is
        # <= 1/2 unless k is the row's largest term, whose leave-one-out sum is computed directly.
        x = e.masked_fill(own, NEG)
        total = x.logsumexp(1, keepdim=True)
        top = batch.column_mask(x.argmax(1))
        ratio = (x - total).exp().masked_fill(top, 0.0)
        without_top = masked_logsumexp(x, ~own & ~top, 1, keepdim=True)
        den = torch.where(top, without_top, total + torch.log1p(-ratio))
        n_left = (~own).sum(1, keepdim=True) - (~own).long()  # |{t not in {a, k}}|
        return s, den, n_left > 0
