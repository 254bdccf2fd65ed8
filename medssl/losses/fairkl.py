"""FairKL: a debiasing regulariser that matches similarity distributions across bias groups (site).

Pairs ``(a, b)`` of the stacked rows are split by target ``y`` and bias (site) into
PA (same y, same bias), PC (same y, other bias), NA (other y, same bias), NC (other y, other bias).
``mode="paper"``: a Gaussian (weighted mean, population variance + 1e-12) is fitted to the similarities
``S = Z Z^T / temperature`` of each set over ``b != a`` and ``R = KL(PA || PC) + KL(NA || NC)`` with
``KL(N0 || N1) = 1/2 (v0/v1 + (mu0 - mu1)^2 / v1 - 1 + log(v1/v0))``. A KL term whose sets are empty
(e.g. a batch from one site) is 0.
Continuous ``y`` (medssl's extension): with a ``kernel``, pair (a, b) belongs to the positive sets with
weight ``K_ab`` and to the negative sets with weight ``1 - K_ab``; ``kernel="dirac"`` (the default) is
exactly the discrete form.
``mode="code"`` (the authors' surrogate, ``kld=1.0``): ``mu_X = sum(S o X) / max(|X|, 1)`` with self-pairs
in PA, ``sd_X`` = unbiased std of all entries of ``S o X`` (zeros included),
``R = (mu_PC - mu_PA)^2 + (mu_NA - mu_NC)^2 + kld [(sd_PA - sd_PC)^2 + (sd_NA - sd_NC)^2] - mu_PC + mu_NA``.

Distributed: embeddings, y and bias are gathered; every rank computes the global R (so inputs receive
``world_size`` x the single-process gradient and DDP's average is exact, as for the other losses).

- [0] Barbano et al., Unbiased Supervised Contrastive Learning, ICLR 2023,
  https://arxiv.org/abs/2211.05568
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.losses.batch import as_label_matrix, check_pair, compute_dtype, gather_rows, without_autocast
from medssl.losses.core import check_choice, check_number
from medssl.losses.kernels import KernelLike, SigmaLike, resolve_kernel
from medssl.registry import LOSSES

VAR_EPS = 1e-12


PA, PC, NA, NC = range(4)  # the order of the stacked pair-set weight matrices


def _moments(s: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted mean, population variance (+1e-12) and total weight of ``s`` ``(n, n)`` under each of
    the weight matrices ``w`` ``(k, n, n)``: three ``(k,)`` tensors (one reduction for all sets)."""
    total = w.sum((-2, -1))
    safe = total.clamp_min(torch.finfo(s.dtype).tiny)
    mu = (w * s).sum((-2, -1)) / safe
    var = (w * (s - mu[:, None, None]).square()).sum((-2, -1)) / safe + VAR_EPS
    return mu, var, total


def _kl(p: tuple[Tensor, Tensor, Tensor], q: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``KL(N(m0, v0) || N(m1, v1))`` elementwise; 0 where either set is empty (NaN stays NaN: a
    missing label must not read as a zero regulariser)."""
    (m0, v0, t0), (m1, v1, t1) = p, q
    kl = 0.5 * (v0 / v1 + (m0 - m1).square() / v1 - 1 + torch.log(v1 / v0))
    return torch.where((t0 <= 0) | (t1 <= 0), torch.zeros_like(kl), kl)


@LOSSES.register("fairkl")
class FairKLRegularizer(nn.Module):
    """FairKL regulariser R (use as ``alpha * L + lam * R``, see ``CombinedObjective``).

    Args:
        temperature: tau > 0 of ``S = Z Z^T / tau`` (published default 1.0).
        mode: ``"paper"`` (Gaussian KL) or ``"code"`` (the authors' moment-matching surrogate).
        kld: weight of the standard-deviation terms in ``mode="code"`` (default 1.0).
        kernel, sigma: kernel over ``y`` for continuous targets (default ``"dirac"``: discrete y).
        views: ``"both"`` (2N stacked rows) or ``"first"`` (z1 only, as the authors' code);
            None = ``"both"`` for the paper mode, ``"first"`` for the code mode.
        base_temperature: None or tau_0 (R times tau / tau_0). reduction: only ``"mean"`` (R is a batch
            statistic, not a sum over anchors).
    Published use (Barbano 2023): with eps_supinfonce, tau = 0.1 for the loss, lambda > 0, batch 256.

    Examples:
        >>> import torch
        >>> from medssl.losses import build_loss
        >>> reg = build_loss("fairkl", kernel="rbf", sigma=2.0)
        >>> age, site = 20 + 50 * torch.rand(8), torch.tensor([0, 1] * 4)
        >>> float(reg(torch.randn(8, 16), torch.randn(8, 16), y=age, bias=site)) >= 0
        True
    """

    uses_labels = uses_bias = needs_labels = True  # the objective's label (y) and bias, both required

    def __init__(
        self,
        temperature: float = 1.0,
        mode: str = "paper",
        kld: float = 1.0,
        kernel: KernelLike = "dirac",
        sigma: SigmaLike | None = None,
        views: str | None = None,
        base_temperature: float | None = None,
        reduction: str = "mean",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = check_number("temperature", temperature, positive=True)
        self.mode = check_choice("mode", mode, ("paper", "code"))
        self.kld = check_number("kld", kld)
        self.kernel = kernel if callable(kernel) else str(kernel)
        self.sigma = sigma
        self.kernel_fn = resolve_kernel(kernel, sigma)
        peak = float(self.kernel_fn(torch.zeros(1, 1), torch.zeros(1, 1)).max())
        if peak > 1 + 1e-6:  # the negative sets weigh pairs by 1 - K
            raise ValueError(f"FairKL needs a kernel with values in [0, 1]; kernel={self.kernel!r} with "
                             f"sigma={sigma} reaches {peak:.3g} (a normalised gaussian exceeds 1 for "
                             "sigma < 0.4): use kernel='rbf'")
        default_views = "both" if mode == "paper" else "first"
        self.views = check_choice(
            "views", default_views if views is None else views, ("both", "first")
        )
        self.base_temperature = (
            None
            if base_temperature is None
            else check_number("base_temperature", base_temperature, positive=True)
        )
        self.reduction = check_choice("reduction", reduction, ("mean",))
        self.gather = bool(gather)

    def extra_repr(self) -> str:
        keys = [
            "temperature",
            "mode",
            "kld",
            "kernel",
            "sigma",
            "views",
            "base_temperature",
            "reduction",
        ]
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    @without_autocast
    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        y: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """R for ``z1``, ``z2`` ``(N, d)``, targets ``y`` ``(N,)``/``(N, m)`` and bias groups ``bias`` ``(N,)``."""
        check_pair(z1, z2)
        n = z1.shape[0]
        if y is None or bias is None:
            raise ValueError(
                "fairkl needs both y (target) and bias (e.g. site) tensors of shape (N,)"
            )
        ym = as_label_matrix(y, n)
        bm = as_label_matrix(bias, n, "bias")
        assert ym is not None and bm is not None
        dtype = compute_dtype(z1, z2)
        views = (z1,) if self.views == "first" else (z1, z2)
        z = torch.cat(
            [gather_rows(F.normalize(v.to(dtype), dim=1), self.gather) for v in views]
        )
        reps = len(views)
        ym, bm = (
            gather_rows(ym, self.gather).repeat(reps, 1),
            gather_rows(bm, self.gather).repeat(reps, 1),
        )
        s = z @ z.T / self.temperature
        k = self.kernel_fn(ym, ym).to(dtype)  # positive weight of each pair
        same_bias = (
            (bm == bm.T).to(dtype)
            if bm.shape[1] == 1
            else (bm[:, None] == bm[None]).all(-1).to(dtype)
        )
        sets = torch.stack([k * same_bias, k * (1 - same_bias), (1 - k) * same_bias,
                            (1 - k) * (1 - same_bias)])  # (4, n, n): PA, PC, NA, NC
        r = self._paper(s, sets) if self.mode == "paper" else self._code(s, sets)
        if self.base_temperature is not None:
            r = r * (self.temperature / self.base_temperature)
        return r

    @staticmethod
    def _paper(s: Tensor, sets: Tensor) -> Tensor:
        off = 1 - torch.eye(s.shape[0], dtype=s.dtype, device=s.device)  # pairs b != a
        mu, var, total = _moments(s, sets * off)
        same, other = [PA, NA], [PC, NC]  # each against its other-bias set
        return _kl((mu[same], var[same], total[same]), (mu[other], var[other], total[other])).sum()

    def _code(self, s: Tensor, sets: Tensor) -> Tensor:
        off = 1 - torch.eye(s.shape[0], dtype=s.dtype, device=s.device)
        w = torch.cat([sets[PA:PA + 1], sets[PC:] * off])  # self-pairs only in PA
        masked = s * w
        mu = masked.sum((1, 2)) / w.sum((1, 2)).clamp_min(1.0)
        sd = masked.flatten(1).std(1) if s.numel() > 1 else s.new_zeros(4)
        return (
            (mu[PC] - mu[PA]).square()
            + (mu[NA] - mu[NC]).square()
            + self.kld * ((sd[PA] - sd[PC]).square() + (sd[NA] - sd[NC]).square())
            - mu[PC]
            + mu[NA]
        )
