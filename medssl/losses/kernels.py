"""Kernels over labels: ``K(y_a, y_b)``, the degree of positiveness of a pair (pure torch).

A kernel maps label rows ``y1 (A, m)`` and ``y2 (B, m)`` to weights ``(A, B)``. ``sigma`` is in the units
of ``y`` (years for age) and may be a length-m sequence (one bandwidth per dimension of ``y``).

- ``rbf``: ``exp(-1/2 sum_j (dy_j / sigma_j)^2)``, maximum 1 (Dufumier 2021; Barbano ``rbf``).
- ``gaussian``: ``rbf / ((2 pi)^(m/2) prod_j sigma_j)`` (Barbano ``gaussian``; about 0.399 at sigma=1).
- ``cauchy``: ``1 / (sum_j sigma_j dy_j^2 + 1)`` (Barbano; sigma acts as gamma).
- ``dirac``: ``1[y_a == y_b]`` (every dimension equal); sigma is ignored.

A plain callable ``f(y1, y2) -> (A, B)`` is accepted wherever a kernel name is.

Examples:
    >>> k = KERNELS.build("rbf", sigma=5.0)
    >>> k(torch.tensor([[20.0]]), torch.tensor([[25.0]]))   # exp(-0.5)
    tensor([[0.6065]])
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch
from torch import Tensor

from medssl.registry import KERNELS

SigmaLike = Union[float, Sequence[float]]
KernelLike = Union[str, Callable[[Tensor, Tensor], Tensor]]


def check_sigma(sigma: SigmaLike) -> float | tuple[float, ...]:
    """Validate ``sigma`` (a positive finite float or a non-empty sequence of them)."""
    values = [sigma] if isinstance(sigma, (int, float)) else list(sigma)
    if not values or not all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values
    ):
        raise ValueError(
            f"sigma must be a positive finite number or a list of them, got {sigma!r}"
        )
    return (
        float(values[0])
        if isinstance(sigma, (int, float))
        else tuple(float(v) for v in values)
    )


class Kernel:
    """Base class (a plain callable, no parameters): pairwise label differences -> weights ``(A, B)``."""

    def __init__(self, sigma: SigmaLike = 1.0) -> None:
        self.sigma = check_sigma(sigma)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"

    def __call__(self, y1: Tensor, y2: Tensor) -> Tensor:
        return self.forward(y1, y2)

    def _sigma(self, m: int, like: Tensor) -> Tensor:
        sig = torch.as_tensor(self.sigma, dtype=like.dtype, device=like.device).reshape(
            -1
        )
        if sig.numel() not in (1, m):
            raise ValueError(
                f"sigma has {sig.numel()} values but y has {m} dimensions (shape (N, {m}))"
            )
        return sig.expand(m)

    @staticmethod
    def _diff(y1: Tensor, y2: Tensor) -> Tensor:
        if y1.ndim != 2 or y2.ndim != 2 or y1.shape[1] != y2.shape[1]:
            raise ValueError(
                f"kernel inputs must be (A, m) and (B, m), got {tuple(y1.shape)}, {tuple(y2.shape)}"
            )
        y1, y2 = _floating(y1), _floating(y2)
        return y1[:, None, :] - y2[None, :, :]  # (A, B, m)

    def forward(self, y1: Tensor, y2: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _floating(y: Tensor) -> Tensor:
    return y if y.is_floating_point() else y.to(torch.float64)


@KERNELS.register("rbf")
class RBFKernel(Kernel):
    """``exp(-1/2 sum_j (dy_j / sigma_j)^2)``: 1 for equal labels, exp(-1/2) one sigma apart."""

    def forward(self, y1: Tensor, y2: Tensor) -> Tensor:
        d = self._diff(y1, y2)
        return torch.exp(-0.5 * (d / self._sigma(d.shape[-1], d)).square().sum(-1))


@KERNELS.register("gaussian")
class GaussianKernel(Kernel):
    """The normalised Gaussian density: ``rbf / ((2 pi)^(m/2) prod_j sigma_j)``."""

    def forward(self, y1: Tensor, y2: Tensor) -> Tensor:
        d = self._diff(y1, y2)
        sig = self._sigma(d.shape[-1], d)
        norm = (2 * math.pi) ** (d.shape[-1] / 2) * sig.prod()
        return torch.exp(-0.5 * (d / sig).square().sum(-1)) / norm


@KERNELS.register("cauchy")
class CauchyKernel(Kernel):
    """``1 / (sum_j sigma_j dy_j^2 + 1)`` (sigma plays the role of gamma, as in Barbano's code)."""

    def forward(self, y1: Tensor, y2: Tensor) -> Tensor:
        d = self._diff(y1, y2)
        return 1.0 / ((self._sigma(d.shape[-1], d) * d.square()).sum(-1) + 1.0)


@KERNELS.register("dirac")
class DiracKernel(Kernel):
    """``1[y_a == y_b]`` on every dimension (labels compared exactly, in their own dtype)."""

    def forward(self, y1: Tensor, y2: Tensor) -> Tensor:
        if y1.ndim != 2 or y2.ndim != 2 or y1.shape[1] != y2.shape[1]:
            raise ValueError(
                f"kernel inputs must be (A, m) and (B, m), got {tuple(y1.shape)}, {tuple(y2.shape)}"
            )
        out = (y1[:, None, :] == y2[None, :, :]).all(-1)
        return out.to(y1.dtype if y1.is_floating_point() else torch.float64)


def resolve_kernel(
    kernel: KernelLike, sigma: SigmaLike | None
) -> Callable[[Tensor, Tensor], Tensor]:
    """A kernel module from a registered name (with ``sigma``) or a user callable (``sigma`` must be None).

    Raises:
        ValueError: unknown name, invalid sigma, or a sigma given together with a callable.
    """
    if callable(kernel):
        if sigma is not None:
            raise ValueError(
                "sigma only applies to named kernels; bake the bandwidth into your callable"
            )
        return kernel
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(
            f"unknown kernel {kernel!r}; choose one of {KERNELS.names()} or pass a callable"
        )
    return KERNELS.get(kernel)(sigma=1.0 if sigma is None else sigma)
