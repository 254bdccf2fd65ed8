"""The one kernel-weighted InfoNCE core behind every contrastive loss of medssl.

For anchor ``a`` (one of the 2N view-major rows) and candidates ``b`` (the other rows, plus queue rows):

    s_ab = <z_a, z_b> / temperature
    W_ab = K(y_a - y_b) for b != a, 0 on the anchor itself     (K = kernel; instance identity without y)
    l_a  = -(temperature / base_temperature) * sum_b Wn_ab [num_ab - den_ab]

``Wn`` is ``W`` normalised per anchor (``"row"``, the papers) or per candidate (``"col"``, Dufumier's
code). Each loss only chooses ``num`` (usually ``s``) and the log-denominator ``den`` (a masked
log-sum-exp); pairs whose denominator set is empty are skipped, anchors without positives give 0.
Reductions: ``mean`` over the 2N anchors, ``sum_over_N`` (= 2 x mean, Dufumier's code), ``none``.

Distributed (``gather=True`` and ``torch.distributed`` initialised): candidates and labels are gathered
from every rank, anchors stay local, and rank r returns ``world_size * sum_{local a} l_a / (2N)`` (``/ N``
for ``sum_over_N``); the mean of these values over ranks is the single-process loss on the concatenated
batch, each input embedding receives ``world_size`` times its single-process gradient, and DDP's average
over ranks makes the parameter gradients exactly the single-process ones. ``none`` returns the local
anchors' unscaled terms.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from medssl.losses.batch import ContrastBatch, build_batch, without_autocast
from medssl.losses.kernels import DiracKernel, KernelLike, SigmaLike, resolve_kernel

REDUCTIONS = ("mean", "sum_over_N", "none")
NEG = (
    -1e30
)  # stands for log(0) in masked log-sum-exps; finite so that no gradient becomes NaN


def masked_logsumexp(
    x: Tensor, mask: Tensor, dim: int = -1, keepdim: bool = False
) -> Tensor:
    """``log sum_{mask} exp(x)`` along ``dim``; an empty set gives ~``NEG`` (callers skip it)."""
    return x.masked_fill(~mask, NEG).logsumexp(dim, keepdim=keepdim)


def check_number(name: str, value: float, *, positive: bool = False) -> float:
    """``value`` as a float when it is a finite number, > 0 (``positive``) or >= 0; else ``ValueError``.

    Examples:
        >>> check_number("epsilon", 0)
        0.0
        >>> check_number("temperature", float("nan"), positive=True)
        Traceback (most recent call last):
        ...
        ValueError: temperature must be a finite number > 0, got nan
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def reduce_anchors(per_anchor: Tensor, batch: ContrastBatch, reduction: str) -> Tensor:
    """Apply ``reduction`` to the ``(n_a,)`` local anchor terms (scaled for distributed runs, see above)."""
    if reduction == "none":
        return per_anchor
    n = batch.n_batch if reduction == "mean" else batch.n_subjects
    return per_anchor.sum() * (batch.world_size / n)


class KernelInfoNCE(nn.Module):
    """Kernel-weighted InfoNCE (the y-aware loss); base class of every contrastive loss of medssl.

    Subclasses override :meth:`log_terms` (numerator and log-denominator of each pair) and, for the
    supervised ones, fix the kernel. Hyper-parameters are attributes shown in ``repr``.

    Args:
        temperature: tau > 0; ``s_ab = cos(z_a, z_b) / tau``.
        base_temperature: None (factor 1) or tau_0 > 0 (loss times ``tau / tau_0``, SupContrast-style).
        reduction: ``"mean"`` | ``"sum_over_N"`` | ``"none"``.
        kernel: ``"rbf"`` | ``"gaussian"`` | ``"cauchy"`` | ``"dirac"`` | callable ``(y1, y2) -> (A, B)``.
        sigma: bandwidth in the units of ``y`` (float or one per dimension of ``y``).
        normalize: ``"row"`` (paper) or ``"col"`` (authors' code) normalisation of ``W``.
        gather: gather candidates from all ranks when ``torch.distributed`` is initialised.
    """

    uses_labels = True

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        reduction: str = "mean",
        kernel: KernelLike = "rbf",
        sigma: SigmaLike | None = None,
        normalize: str = "row",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = check_number("temperature", temperature, positive=True)
        self.base_temperature = (
            None
            if base_temperature is None
            else check_number("base_temperature", base_temperature, positive=True)
        )
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.normalize = check_choice("normalize", normalize, ("row", "col"))
        self.kernel = kernel if callable(kernel) else str(kernel)
        self.sigma = sigma
        self.kernel_fn: Callable[[Tensor, Tensor], Tensor] = resolve_kernel(
            kernel, sigma
        )
        self.gather = bool(gather)

    def extra_repr(self) -> str:
        keys = ["temperature", "base_temperature", "reduction", *self._repr_keys()]
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    def _repr_keys(self) -> list[str]:
        return ["kernel", "sigma", "normalize"]

    @without_autocast
    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        y: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        queue_z: Tensor | None = None,
        queue_y: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``z1``, ``z2`` ``(N, d)`` with labels ``y`` ``(N,)``/``(N, m)`` (``bias`` is unused).

        ``queue_z`` ``(M, d)`` / ``queue_y`` ``(M,)``/``(M, m)``: extra candidates, never anchors.
        Returns a scalar, or ``(2N,)`` per-anchor terms (view-major) with ``reduction="none"``.
        """
        labelled = self.uses_labels and y is not None
        batch = build_batch(
            z1,
            z2,
            y if labelled else None,
            queue_z=queue_z,
            queue_y=queue_y,
            gather=self.gather,
        )
        s = batch.anchors @ batch.candidates.T / self.temperature  # (n_a, n_c)
        kernel = self.kernel_fn if labelled else DiracKernel()
        w, wn = self.pair_weights(batch, kernel)
        num, den, valid = self.log_terms(s, w, batch, kernel)
        keep = valid & ~(wn <= 0)  # a NaN weight (a missing label) keeps the loss NaN: the guard stops
        per_anchor = -torch.where(keep, wn * (num - den), torch.zeros_like(s)).sum(1)
        if self.base_temperature is not None:
            per_anchor = per_anchor * (self.temperature / self.base_temperature)
        return reduce_anchors(per_anchor, batch, self.reduction)

    def pair_weights(
        self, batch: ContrastBatch, kernel: Callable[[Tensor, Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """``W`` ``(n_a, n_c)`` (kernel, 0 on the anchor itself) and its normalisation ``Wn``."""
        dtype = batch.candidates.dtype
        if (
            self.normalize == "col"
        ):  # column sums run over every anchor of the global batch
            rows = torch.arange(batch.n_batch, device=batch.anchor_index.device)
            full = kernel(batch.labels[: batch.n_batch], batch.labels).to(dtype)
            full = full.masked_fill(batch.column_mask(rows), 0.0)
            w = full[batch.anchor_index]
            return w, w / full.sum(0, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        w = kernel(batch.labels[batch.anchor_index], batch.labels).to(dtype)
        w = w.masked_fill(batch.column_mask(batch.anchor_index), 0.0)
        return w, w / w.sum(1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)

    def log_terms(
        self,
        s: Tensor,
        w: Tensor,
        batch: ContrastBatch,
        kernel: Callable[[Tensor, Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(num, den, valid)`` broadcastable to ``(n_a, n_c)``; default ``den_a = log sum_{c != a} e^{s_ac}``."""
        others = ~batch.column_mask(batch.anchor_index)
        return (
            s,
            masked_logsumexp(s, others, 1, keepdim=True),
            others.any(1, keepdim=True),
        )


class DiracInfoNCE(KernelInfoNCE):
    """The core with its kernel fixed to ``dirac`` (same label, or same subject without ``y``): the base of
    SimCLR's ``infonce`` and of ``supcon``. Hyper-parameters: ``temperature``, ``base_temperature``,
    ``reduction``, ``gather`` (see :class:`KernelInfoNCE`)."""

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None, reduction: str = "mean",
                 gather: bool = True) -> None:
        super().__init__(temperature, base_temperature, reduction, "dirac", None, "row", gather)

    def _repr_keys(self) -> list[str]:
        return []


class KernelRegressionLoss(KernelInfoNCE):
    """The core for contrastive regression (``thr``, ``exp``): row-normalised kernel weights, rbf with
    ``sigma`` = 2 (years) by default, and the paper's or the authors' code ``variant``."""

    def __init__(self, temperature: float = 0.1, sigma: SigmaLike | None = None, kernel: KernelLike = "rbf",
                 variant: str = "paper", base_temperature: float | None = None, reduction: str = "mean",
                 gather: bool = True) -> None:
        if sigma is None and not callable(kernel):
            sigma = 2.0
        super().__init__(temperature, base_temperature, reduction, kernel, sigma, "row", gather)
        self.variant = check_choice("variant", variant, ("paper", "code"))

    def _repr_keys(self) -> list[str]:
        return ["kernel", "sigma", "variant"]
