"""Batched spatial augmentations: flip, cutout, random crop + resize back, small affine.

All act on ``(B, C, D, H, W)`` batches with per-sample parameters (see :mod:`medssl.transforms.base`).
Resampling runs in float32 (half-precision coordinates or weights would be off by up to ~0.5 voxel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medssl.transforms.base import (
    RandomOp, SeparableOp, identity_where_not, per_sample, taps_to_matrix, uniform,
)


class RandomFlip(SeparableOp):
    """Mirror each selected sample along one spatial axis drawn uniformly from ``axes``.

    Args:
        p: probability per sample.
        axes: candidate spatial axes (0 = D, 1 = H, 2 = W).
    """

    def __init__(self, p: float, axes: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__(p)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"flip axes must be a non-empty subset of (0, 1, 2), got {axes!r}")
        self.axes = tuple(int(a) for a in axes)

    def flipped(self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None) -> list[torch.Tensor]:
        """Per spatial axis, ``(B,)`` bool: the samples mirrored along it (at most one axis each)."""
        choice = torch.randint(len(self.axes), (x.shape[0],), generator=generator, device=x.device)
        return [apply & torch.isin(choice, torch.tensor([i for i, a in enumerate(self.axes) if a == axis],
                                                        dtype=choice.dtype, device=x.device))
                for axis in range(3)]  # an axis listed twice is drawn twice as often

    def augment_selected(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One gather ``out[b, c, i, j, k] = x[b, c, I_b[i], J_b[j], K_b[k]]``, each index reversed or
        not per sample: one read and one write of the batch (flipping every sample along each axis
        and blending would be 15)."""
        index = []
        for flip, n in zip(self.flipped(x, apply, generator), x.shape[2:]):
            ramp = torch.arange(n, device=x.device)
            index.append(torch.where(flip[:, None], ramp.flip(0), ramp))  # (B, n)
        b, c = (torch.arange(n, device=x.device) for n in x.shape[:2])
        return x[b[:, None, None, None, None], c[None, :, None, None, None], index[0][:, None, :, None, None],
                 index[1][:, None, None, :, None], index[2][:, None, None, None, :]]

    def axis_matrices(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        """The exchange matrix (ones on the anti-diagonal) where a sample is mirrored, else identity."""
        return [identity_where_not(flip, torch.eye(n, device=x.device).flip(1).expand(len(flip), n, n))
                for flip, n in zip(self.flipped(x, apply, generator), x.shape[2:])]

    def extra_repr(self) -> str:
        return f"p={self.p}, axes={self.axes}"


class Cutout(RandomOp):
    """Set one box of ``ceil(fraction * n)`` voxels per axis, at a uniform random position inside the
    volume, to ``value`` (y-aware: fraction 1/4 per side, i.e. ~1/64 of the voxels, value 0).

    Args:
        p: probability per sample.
        fraction: box side as a fraction of each spatial size.
        value: fill value.
    """

    def __init__(self, p: float, fraction: float = 0.25, value: float = 0.0) -> None:
        super().__init__(p)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"cutout fraction must be in (0, 1], got {fraction}")
        self.fraction, self.value = float(fraction), float(value)

    def box_size(self, shape: Sequence[int]) -> list[int]:
        return [max(1, math.ceil(self.fraction * n)) for n in shape]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inside = per_sample(self.draw_apply(x, generator))
        for axis, (n, s) in enumerate(zip(x.shape[2:], self.box_size(x.shape[2:]))):
            start = torch.randint(n - s + 1, (x.shape[0],), generator=generator, device=x.device)
            idx = torch.arange(n, device=x.device)
            hit = (idx[None] >= start[:, None]) & (idx[None] < start[:, None] + s)  # (B, n)
            view = [x.shape[0], 1, 1, 1, 1]
            view[2 + axis] = n
            inside = inside & hit.view(view)
        return torch.where(inside, torch.full((), self.value, dtype=x.dtype, device=x.device), x)

    def extra_repr(self) -> str:
        return f"p={self.p}, fraction={self.fraction}, value={self.value}"


def crop_resize_matrix(start: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """``(B, n, n)`` matrix that crops ``[start_b, start_b + size)`` and resizes it back to ``n``.

    Linear interpolation as ``F.interpolate(..., align_corners=False)``: output i reads the crop at
    ``s = clamp((i + 0.5) size / n - 0.5, 0, size - 1)``, weights ``1 - (s - floor s)`` and ``s - floor s``
    on voxels ``floor s`` and ``min(floor s + 1, size - 1)``, shifted by ``start_b``.
    """
    i = torch.arange(n, device=start.device, dtype=torch.float64)
    src = ((i + 0.5) * (size / n) - 0.5).clamp(0, size - 1)
    lo = src.floor()
    frac = src - lo
    hi = (lo + 1).clamp(max=size - 1)
    index = torch.stack([lo, hi], dim=1).long()[None] + start.view(-1, 1, 1)  # (B, n, 2)
    weight = torch.stack([1 - frac, frac], dim=1)[None].expand(start.shape[0], -1, -1)
    return taps_to_matrix(index, weight, n)


class CropResize(SeparableOp):
    """Crop ``ceil(scale * n)`` voxels per axis at a uniform random integer position and resize the
    crop back to ``n`` by trilinear interpolation.

    Per sample this is ``F.interpolate(crop, size=(D, H, W), mode="trilinear", align_corners=False)``
    (MONAI ``RandSpatialCrop`` + ``Resize``); trilinear resizing is separable, so the batch is done by
    three per-sample interpolation matrices (:func:`crop_resize_matrix`, ``apply_per_axis``).

    Args:
        p: probability per sample.
        scale: crop side as a fraction of each spatial size (y-aware: 0.75).
    """

    def __init__(self, p: float, scale: float = 0.75) -> None:
        super().__init__(p)
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"crop scale must be in (0, 1], got {scale}")
        self.scale = float(scale)

    def crop_size(self, n: int) -> int:
        return max(1, math.ceil(self.scale * n))

    def axis_matrices(
        self, x: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        mats = []
        for n in x.shape[2:]:
            c = self.crop_size(n)
            start = torch.randint(n - c + 1, (x.shape[0],), generator=generator, device=x.device)
            mats.append(identity_where_not(apply, crop_resize_matrix(start, c, n)))
        return mats

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}"


def affine_theta(angles: torch.Tensor, scales: torch.Tensor, shifts: torch.Tensor,
                 shape: Sequence[int]) -> torch.Tensor:
    """``(B, 3, 4)`` ``affine_grid`` matrices for rotations and scalings in voxel space.

    Args:
        angles: ``(B, 3)`` radians about the W (x), H (y) and D (z) axes; R = Rz Ry Rx.
        scales: ``(B, 3)`` factors along x, y, z (output -> input: > 1 zooms out).
        shifts: ``(B, 3)`` translations as fractions of the x, y, z sizes.
        shape: spatial ``(D, H, W)``.

    The map acts on voxel offsets from the centre, ``v_in = R S v_out + t``; in ``affine_grid``'s
    normalised coordinates (``u = v / (n / 2)``) it is ``N^-1 R S N`` with ``N = diag(W, H, D) / 2``,
    so rotations stay rigid on anisotropic grids.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def rot(c: torch.Tensor, s: torch.Tensor, plane: tuple[int, int]) -> torch.Tensor:
        m = torch.stack([one, zero, zero, zero, one, zero, zero, zero, one], 1).view(-1, 3, 3).clone()
        a, b = plane
        m[:, a, a], m[:, a, b], m[:, b, a], m[:, b, b] = c, -s, s, c
        return m

    r_z, r_y = rot(cos[:, 2], sin[:, 2], (0, 1)), rot(cos[:, 1], sin[:, 1], (2, 0))
    r = r_z @ r_y @ rot(cos[:, 0], sin[:, 0], (1, 2))
    half = torch.tensor([shape[2], shape[1], shape[0]], dtype=angles.dtype, device=angles.device) / 2
    lin = (r * scales[:, None, :]) * half[None, None, :] / half[None, :, None]
    return torch.cat([lin, 2 * shifts[:, :, None]], dim=2)


class RandomAffine(RandomOp):
    """Small rigid-plus-scale jitter: rotations ``U(+-rotate_deg)`` about each axis, per-axis scale
    ``1 + U(+-scale)``, shift ``U(+-translate)`` of each size; trilinear, border padding.

    Args:
        p: probability per sample.
        rotate_deg: maximal absolute rotation about each axis, in degrees.
        scale: maximal relative scale change per axis.
        translate: maximal shift per axis, as a fraction of the size.
    """

    def __init__(
        self, p: float, rotate_deg: float = 5.0, scale: float = 0.05, translate: float = 0.02
    ) -> None:
        super().__init__(p)
        if min(rotate_deg, scale, translate) < 0 or scale >= 1:
            raise ValueError(
                f"affine ranges must be >= 0 (scale < 1), got {rotate_deg}, {scale}, {translate}"
            )
        self.rotate_deg, self.scale, self.translate = float(rotate_deg), float(scale), float(translate)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        r = math.radians(self.rotate_deg)
        angles = uniform(x, generator, -r, r, n=3)
        scales = uniform(x, generator, 1 - self.scale, 1 + self.scale, n=3)
        shifts = uniform(x, generator, -self.translate, self.translate, n=3)
        theta = affine_theta(angles, scales, shifts, x.shape[2:])
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, rotate_deg={self.rotate_deg}, scale={self.scale}, translate={self.translate}"

