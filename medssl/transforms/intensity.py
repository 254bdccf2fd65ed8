"""Batched intensity augmentations: Gaussian noise, Gaussian blur, polynomial bias field.

All act on ``(B, C, D, H, W)`` batches with per-sample parameters (see :mod:`medssl.transforms.base`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from medssl.transforms.base import (
    RandomOp, SeparableOp, as_range, identity_where_not, per_sample, taps_to_matrix, uniform,
)


class GaussianNoise(RandomOp):
    """``x + sigma_b * eps``, ``eps ~ N(0, 1)`` voxel-wise, ``sigma_b ~ U(sigma)`` per sample.

    Args:
        p: probability per sample.
        sigma: ``(low, high)`` range of the noise standard deviation (in z-score units).
    """

    def __init__(self, p: float, sigma: float | Sequence[float] = (0.1, 1.0)) -> None:
        super().__init__(p)
        self.sigma = as_range(sigma, "noise sigma")

    def augment_selected(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        sigma = uniform(x, generator, *self.sigma).to(x.dtype) * apply  # sigma 0: x unchanged
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return eps.mul_(per_sample(sigma)).add_(x)  # in place: one batch-sized temporary, not three

    def extra_repr(self) -> str:
        return f"p={self.p}, sigma={self.sigma}"


NEGLIGIBLE_WEIGHT = 1e-20  # below float32 and float64 resolution of any sum it enters


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B,)`` standard deviations -> ``(B, 2 radius + 1)`` sampled Gaussians ``exp(-t^2 / 2 s^2)``,
    each summing to 1 (sigma is clamped at 1e-3, where the kernel is already a delta).

    Tail weights below ``NEGLIGIBLE_WEIGHT`` are set to 0: for some sigmas (e.g. 0.14-0.15 voxels at
    t = 2) they would be subnormal floats, which make CPU matrix products several times slower and
    change no output.
    """
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    w = torch.exp(-(t[None, :] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    w = w / w.sum(dim=1, keepdim=True)
    return torch.where(w < NEGLIGIBLE_WEIGHT, 0.0, w)


def blur_matrix(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, n, n)`` matrix of the 1D filtering by ``kernels[b]`` (B, 2r + 1) with edge-replicated
    borders: ``K[b, i, clamp(i + t, 0, n - 1)] += kernels[b, r + t]`` (MONAI zero-pads, scipy reflects;
    they differ only within r voxels of the border)."""
    radius = kernels.shape[1] // 2
    i = torch.arange(n, device=kernels.device)[:, None]
    t = torch.arange(-radius, radius + 1, device=kernels.device)[None, :]
    index = (i + t).clamp(0, n - 1).expand(kernels.shape[0], n, -1)
    return taps_to_matrix(index, kernels[:, None, :].expand(-1, n, -1), n)


class GaussianBlur(SeparableOp):
    """Isotropic Gaussian smoothing with ``sigma_b ~ U(sigma)`` voxels per sample.

    Args:
        p: probability per sample.
        sigma: ``(low, high)`` range of the standard deviation, in voxels.
        truncate: kernel radius ``ceil(truncate * high)``, as scipy's and MONAI's ``truncated=4``.
    """

    def __init__(self, p: float, sigma: float | Sequence[float] = (0.1, 1.0), truncate: float = 4.0) -> None:
        super().__init__(p)
        self.sigma = as_range(sigma, "blur sigma")
        self.radius = max(1, math.ceil(truncate * self.sigma[1]))

    def axis_matrices(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        kernels = gaussian_kernels(uniform(x, generator, *self.sigma), self.radius)
        return [identity_where_not(apply, blur_matrix(kernels, n)) for n in x.shape[2:]]

    def extra_repr(self) -> str:
        return f"p={self.p}, sigma={self.sigma}, radius={self.radius}"


def legendre_terms(degree: int) -> list[tuple[int, int, int]]:
    """Exponents ``(i, j, k)``, ``i + j + k <= degree``, in MONAI ``RandBiasField``'s coefficient order."""
    return [(i, j, k) for i in range(degree + 1) for j in range(degree + 1 - i)
            for k in range(degree + 1 - i - j)]


def legendre_bias_field(coeffs: torch.Tensor, shape: Sequence[int], degree: int) -> torch.Tensor:
    """``f_b(z, y, x) = sum_t coeffs[b, t] P_i(z) P_j(y) P_k(x)`` on ``linspace(-1, 1)`` grids.

    Args:
        coeffs: ``(B, T)`` with ``T = len(legendre_terms(degree))``, in that order.
        shape: spatial ``(D, H, W)``.

    Returns:
        ``(B, D, H, W)`` log-field in ``coeffs``' dtype (what MONAI's ``_generate_random_field``
        gives for the same coefficients).
    """
    terms = legendre_terms(degree)
    if coeffs.shape[1] != len(terms):
        raise ValueError(f"degree {degree} needs {len(terms)} coefficients, got {coeffs.shape[1]}")
    mat = coeffs.new_zeros(coeffs.shape[0], degree + 1, degree + 1, degree + 1)
    i, j, k = (torch.tensor(idx, device=coeffs.device) for idx in zip(*terms))
    mat[:, i, j, k] = coeffs
    grids = [torch.linspace(-1.0, 1.0, n, device=coeffs.device, dtype=coeffs.dtype) for n in shape]
    polys = [_legendre(t, degree) for t in grids]
    field = torch.einsum("bijk,kw->bijw", mat, polys[2])
    field = torch.einsum("bijw,jh->bihw", field, polys[1])
    return torch.einsum("bihw,id->bdhw", field, polys[0])


def _legendre(t: torch.Tensor, degree: int) -> torch.Tensor:
    """``(degree + 1, n)`` Legendre polynomials at ``t`` by Bonnet's recursion
    ``(n + 1) P_{n+1} = (2n + 1) t P_n - n P_{n-1}``."""
    p = [torch.ones_like(t), t]
    for n in range(1, degree):
        p.append(((2 * n + 1) * t * p[n] - n * p[n - 1]) / (n + 1))
    return torch.stack(p[: degree + 1])


class BiasField(RandomOp):
    """Smooth multiplicative intensity inhomogeneity ``x * exp(f_b)``, ``f_b`` a degree-``degree``
    Legendre polynomial with coefficients ``~ U(coeff_range)`` per sample (MONAI ``RandBiasField``).

    Args:
        p: probability per sample.
        degree: polynomial degree (3 gives 20 coefficients).
        coeff_range: ``(low, high)`` of the coefficients (may be negative).
    """

    def __init__(self, p: float, degree: int = 3, coeff_range: Sequence[float] = (-0.1, 0.1)) -> None:
        super().__init__(p)
        if degree < 1 or len(coeff_range) != 2 or coeff_range[0] > coeff_range[1]:
            raise ValueError(f"bias field needs degree >= 1 and low <= high, got {degree}, {coeff_range}")
        self.degree = int(degree)
        self.coeff_range = (float(coeff_range[0]), float(coeff_range[1]))

    def augment_selected(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        n = len(legendre_terms(self.degree))
        coeffs = uniform(x, generator, *self.coeff_range, n=n) * apply[:, None]  # zero field: x * 1
        field = legendre_bias_field(coeffs, x.shape[2:], self.degree)
        return x * torch.exp(field).unsqueeze(1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, degree={self.degree}, coeff_range={self.coeff_range}"
