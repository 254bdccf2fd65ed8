"""L_thr: kernel-weighted contrastive regression loss that repels only less similar samples.

- [0] Barbano et al., Contrastive learning for regression in multi-site brain age prediction,
  ISBI 2023, https://arxiv.org/abs/2211.08326
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from medssl.losses.batch import ContrastBatch
from medssl.losses.core import NEG, KernelRegressionLoss, masked_logsumexp
from medssl.registry import LOSSES


@LOSSES.register("thr")
class ThresholdKernelLoss(KernelRegressionLoss):
    """L_thr with row-normalised weights ``Wn_ak = K_ak / sum_{c != a} K_ac``.

    ``variant="paper"``: ``R_ak = {t != a : K_at < K_ak}``,
    ``l_a = -sum_{k != a} Wn_ak [s_ak - log sum_{t in R_ak} exp(s_at)]`` (pairs with empty R_ak skipped).
    A dirac kernel with distinct labels gives ``dcl``.
    ``variant="code"`` (the authors' code, a different loss): ``c_ab = #{k in 2N : K_bk < K_ba}`` (K with
    its diagonal, k over the batch rows, not the queue), ``D_a = sum_{b != a} c_ab exp(s_ab)``,
    ``l_a = -sum_{p != a} Wn_ap [s_ap - log D_a]``.

    Vectorised by sorting each anchor's kernel row and a cumulative log-sum-exp: O(N^2 log N), not O(N^3).
    Published defaults (Barbano 2023, OpenBHB): rbf kernel, sigma = 2 (years), tau = 0.1.
    """

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        own = batch.column_mask(batch.anchor_index)
        if self.variant == "code":
            return self._code_terms(s, batch, kernel, own)
        keys, order = w.masked_fill(own, float("inf")).sort(
            1
        )  # the anchor sorts last, never counted
        cum = s.gather(1, order).logcumsumexp(
            1
        )  # cum[:, j] = log sum of the j+1 smallest-K candidates
        count = torch.searchsorted(
            keys, w.contiguous(), right=False
        )  # #{t != a : K_at < K_ak}
        den = cum.gather(1, (count - 1).clamp_min(0))
        return s, den, count > 0

    def _code_terms(
        self,
        s: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
        own: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        k_cb = kernel(
            batch.labels, batch.labels[: batch.n_batch]
        )  # (n_c, 2N): K_bk, diagonal kept
        ranks = torch.searchsorted(
            k_cb.sort(1).values, k_cb[:, batch.anchor_index].contiguous()
        )
        counts = ranks.T.to(s.dtype)  # (n_a, n_c): c_ab
        use = ~own & (counts > 0)
        logc = torch.where(use, counts.clamp_min(1).log(), torch.full_like(s, NEG))
        return (
            s,
            masked_logsumexp(s + logc, use, 1, keepdim=True),
            use.any(1, keepdim=True),
        )
