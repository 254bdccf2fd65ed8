"""The batched random augmentation: per-sample parameters, whole-batch torch ops, any device.

Every op draws, for all B samples at once, whether it applies (``u < p``) and its parameters, computes
the augmented batch, and keeps the input where it does not apply: by a blend (``torch.where``), or, for
ops whose parameters have an identity value (zero noise, a delta kernel, an identity resampling
matrix, a zero log-field), by giving the other samples that value, which saves the blend's pass over
the batch and leaves them bit-identical (with TF32 matmuls off, PyTorch's default). Work is done for
every sample, but nothing depends on data values: no host-device synchronisation, no dynamic shapes,
and a fixed number of random draws per call (so a seeded ``torch.Generator`` reproduces a call).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RandomOp(nn.Module):
    """Base class: ``forward(x (B, C, D, H, W), generator=None) -> (B, C, D, H, W)``.

    The base class draws the per-sample Bernoulli(p) mask ``apply`` and calls
    ``augment_selected(x, apply, generator)``. Subclasses implement either ``augment(x, generator)``, the
    augmentation of every sample (the default ``augment_selected`` blends it with ``x``), or
    ``augment_selected`` itself when "not applied" is a parameter value.

    Args:
        p: probability that a sample is augmented by this op.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: probability p must be in [0, 1], got {p}")
        self.p = float(p)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def augment_selected(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``x`` augmented where ``apply`` ``(B,)`` is True, unchanged elsewhere."""
        return torch.where(per_sample(apply), self.augment(x, generator), x)

    def draw_apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``(B,)`` bool: which samples this call augments (Bernoulli(p), the call's first draw)."""
        return uniform(x, generator) < self.p

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.augment_selected(x, self.draw_apply(x, generator), generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SeparableOp(RandomOp):
    """A random op that is a per-sample linear map along each spatial axis (flip, blur, crop + resize).

    Subclasses implement ``axis_matrices(x, apply, generator)``: ``[K_D, K_H, K_W]``, each ``(B, n, n)``,
    the identity for the samples where ``apply`` is False; the op is ``apply_per_axis(x, matrices)``.
    A ``ViewAugmenter`` composes consecutive separable ops into one product per axis
    (``K = K_2 @ K_1``), so e.g. flip + blur cost one pass of three matmuls.
    """

    def axis_matrices(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        raise NotImplementedError

    def augment_selected(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return apply_per_axis(x, self.axis_matrices(x, apply, generator))


def uniform(
    x: torch.Tensor, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0, n: int = 0
) -> torch.Tensor:
    """``(B,)`` (or ``(B, n)`` when ``n``) float32 draws from U[low, high) on ``x``'s device."""
    shape = (x.shape[0], n) if n else (x.shape[0],)
    u = torch.rand(shape, generator=generator, device=x.device)
    return low + (high - low) * u


def per_sample(v: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, 1, 1)`` to broadcast against a 5D batch."""
    return v.view(-1, 1, 1, 1, 1)


def as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """``(low, high)`` from a pair (a scalar v gives ``(v, v)``); checks ``0 <= low <= high``."""
    pair = (float(value), float(value)) if isinstance(value, (int, float)) else tuple(map(float, value))
    if len(pair) != 2 or not 0.0 <= pair[0] <= pair[1]:
        raise ValueError(f"{name} must be a number or a pair 0 <= low <= high, got {value!r}")
    return pair  # type: ignore[return-value]


def apply_per_axis(x: torch.Tensor, mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply a per-sample linear map along each spatial axis: ``y = x x_0 K_D x_1 K_H x_2 K_W``.

    Args:
        x: ``(B, C, D, H, W)``.
        mats: ``(B, D, D)``, ``(B, H, H)``, ``(B, W, W)``;
            ``y[b, .., i, ..] = sum_j K[b, i, j] x[b, .., j, ..]`` along each axis.

    Separable filters and separable resampling (blur, crop + linear resize) become three batched
    matmuls: no per-sample loop, and fast on CPU (MKL) and GPU alike. Computed in float32 (float64
    for float64 input).

    Each product contracts the last axis of the previous result and writes the axis it made first,
    ``(W, D, H) -> (H, W, D) -> (D, H, W)`` per volume, so every operand is a view (a matrix
    broadcast over a middle axis would be copied: 1.2x the batch for ``K_H``) and the result comes out
    contiguous. Channels are volumes of their own (the matrices repeated C times when C > 1).
    """
    b, c, d, h, w = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    k_d, k_h, k_w = (m.to(dtype) if c == 1 else m.to(dtype).repeat_interleave(c, dim=0) for m in mats)
    n = b * c
    y = k_w @ x.to(dtype).reshape(n, d * h, w).transpose(1, 2)  # (n, W, D*H)
    y = k_h @ y.view(n, w * d, h).transpose(1, 2)  # (n, H, W*D)
    y = k_d @ y.view(n, h * w, d).transpose(1, 2)  # (n, D, H*W)
    return y.view(b, c, d, h, w).to(x.dtype)


def identity_where_not(apply: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """``(B, n, n)`` per-axis matrices, replaced by the identity for the samples where ``apply`` is False."""
    eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
    return torch.where(apply[:, None, None], mats, eye)


def taps_to_matrix(index: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, n, n)`` matrix ``K[b, i, j] = sum_t weight[b, i, t] [index[b, i, t] = j]`` (a sparse row per
    output; taps on the same column add up, e.g. a blur's replicated border).

    Summed over the taps as a reduction, not with ``scatter_add_``, whose CUDA atomics add colliding
    taps in a varying order: the same draws must give bit-identical views (the gradient cache remakes
    them).
    """
    columns = torch.arange(n, device=index.device)
    return (weight[..., None] * (index[..., None] == columns)).sum(dim=2)
