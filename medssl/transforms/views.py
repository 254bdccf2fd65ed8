"""View presets and the batched ``ViewAugmenter`` (registered in ``VIEWS``).

A preset is an ordered list of :class:`OpSpec` (op name, probability, parameters); the same list
builds the batched torch augmenter (``VIEWS.build(preset, **kw)``) and the per-sample MONAI pipeline
(``monai_view_transform(preset, **kw)``), so both backends implement one definition.

Presets (y-aware: Dufumier et al. 2021 and the authors' code):

- ``yaware``: each with probability ``p = 0.5``, in this order: flip along one random axis, Gaussian
  blur ``sigma ~ U(0.1, 1)`` voxels, Gaussian noise ``sigma ~ U(0.1, 1)``, cutout of a box with
  sides 1/4 of the volume's, random crop to 75% per side + trilinear resize back.
- ``cutout``: cutout only, ``p = 1`` (the released y-aware model; the authors' code applies it always).
- ``none``: identity; two calls give two identical views (the L_exp recipe).
- ``full``: ``yaware`` plus a small affine (rotation +-5 deg, scale +-5%, shift +-2%) and a degree-3
  bias field, in the order flip, affine, bias field, blur, noise, cutout, crop.

Views act on z-scored volumes (the dataset normalises), so noise sigma is in z-score units.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medssl.registry import VIEWS
from medssl.transforms.base import RandomOp, SeparableOp, apply_per_axis
from medssl.transforms.intensity import BiasField, GaussianBlur, GaussianNoise
from medssl.transforms.spatial import CropResize, Cutout, RandomAffine, RandomFlip


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One augmentation of a preset: ``name`` (a key of ``TORCH_OPS``), probability ``p``, ``params``."""

    name: str
    p: float
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


TORCH_OPS: dict[str, Callable[..., RandomOp]] = {
    "flip": RandomFlip,
    "blur": GaussianBlur,
    "noise": GaussianNoise,
    "cutout": Cutout,
    "crop_resize": CropResize,
    "bias_field": BiasField,
    "affine": RandomAffine,
}


class ViewAugmenter(nn.Module):
    """A random view of each volume of a batch: the ops in order, each per sample with its own p.

    ``forward(x (B, C, D, H, W), generator=None) -> (B, C, D, H, W)`` (same dtype and device). Every
    random draw uses ``generator`` when given (it must live on ``x.device``; a CUDA batch needs a
    ``torch.Generator("cuda")``), else the device's global RNG. Call it twice for two views.
    Consecutive separable ops (flip, blur, crop + resize) run as one per-axis product
    (:func:`composed`): y-aware's flip + blur cost one pass instead of two.
    """

    def __init__(self, specs: Sequence[OpSpec]) -> None:
        super().__init__()
        self.specs = list(specs)
        self.ops = nn.ModuleList(TORCH_OPS[s.name](s.p, **s.params) for s in self.specs)
        self.groups = separable_runs(list(self.ops))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"views expect a batch (B, C, D, H, W), got shape {tuple(x.shape)}")
        for group in self.groups:
            x = group[0](x, generator) if len(group) == 1 else composed(group, x, generator)
        return x


def separable_runs(ops: list[RandomOp]) -> list[list[RandomOp]]:
    """``ops`` in order, consecutive :class:`SeparableOp` s grouped (each other op alone)."""
    groups: list[list[RandomOp]] = []
    for op in ops:
        if groups and isinstance(op, SeparableOp) and isinstance(groups[-1][-1], SeparableOp):
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups


def composed(ops: list[RandomOp], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Separable ops applied as one per-axis product ``K = K_n @ ... @ K_1`` (the same random draws,
    in the same order, as applying them one by one; float64 products, the result equal to rounding)."""
    mats: list[torch.Tensor] | None = None
    for op in ops:
        assert isinstance(op, SeparableOp)
        step = [m.double() for m in op.axis_matrices(x, op.draw_apply(x, generator), generator)]
        mats = step if mats is None else [k @ m for k, m in zip(step, mats)]
    return apply_per_axis(x, mats)  # type: ignore[arg-type]


def yaware_ops(
    p: float = 0.5,
    flip_axes: Sequence[int] = (0, 1, 2),
    blur_sigma: Sequence[float] = (0.1, 1.0),
    noise_sigma: Sequence[float] = (0.1, 1.0),
    cutout_fraction: float = 0.25,
    cutout_value: float = 0.0,
    crop_scale: float = 0.75,
) -> list[OpSpec]:
    """y-aware views: flip, blur, noise, cutout, crop + resize, each with probability ``p``."""
    return [
        OpSpec("flip", p, {"axes": tuple(flip_axes)}),
        OpSpec("blur", p, {"sigma": tuple(blur_sigma)}),
        OpSpec("noise", p, {"sigma": tuple(noise_sigma)}),
        OpSpec("cutout", p, {"fraction": cutout_fraction, "value": cutout_value}),
        OpSpec("crop_resize", p, {"scale": crop_scale}),
    ]


def cutout_ops(p: float = 1.0, cutout_fraction: float = 0.25, cutout_value: float = 0.0) -> list[OpSpec]:
    """Cutout only (the released y-aware model)."""
    return [OpSpec("cutout", p, {"fraction": cutout_fraction, "value": cutout_value})]


def none_ops() -> list[OpSpec]:
    """No augmentation: identical views."""
    return []


def full_ops(
    p: float = 0.5,
    flip_axes: Sequence[int] = (0, 1, 2),
    blur_sigma: Sequence[float] = (0.1, 1.0),
    noise_sigma: Sequence[float] = (0.1, 1.0),
    cutout_fraction: float = 0.25,
    cutout_value: float = 0.0,
    crop_scale: float = 0.75,
    rotate_deg: float = 5.0,
    scale: float = 0.05,
    translate: float = 0.02,
    bias_degree: int = 3,
    bias_coeff_range: Sequence[float] = (-0.1, 0.1),
) -> list[OpSpec]:
    """``yaware`` plus small affine and bias field, each with probability ``p``."""
    yaware = yaware_ops(p, flip_axes, blur_sigma, noise_sigma, cutout_fraction, cutout_value, crop_scale)
    return [
        yaware[0],
        OpSpec("affine", p, {"rotate_deg": rotate_deg, "scale": scale, "translate": translate}),
        OpSpec("bias_field", p, {"degree": bias_degree, "coeff_range": tuple(bias_coeff_range)}),
        *yaware[1:],
    ]


PRESETS: dict[str, Callable[..., list[OpSpec]]] = {
    "yaware": yaware_ops,
    "cutout": cutout_ops,
    "none": none_ops,
    "full": full_ops,
}


def preset_ops(preset: str, **kwargs: Any) -> list[OpSpec]:
    """The op list of a registered preset, kwargs checked against its signature (``ConfigError``)."""
    VIEWS.check_kwargs(preset, kwargs)
    return PRESETS[preset](**kwargs)


def _register(name: str, ops: Callable[..., list[OpSpec]]) -> None:
    @functools.wraps(ops)  # the registry reads the preset's signature through __wrapped__
    def factory(*args: Any, **kwargs: Any) -> ViewAugmenter:
        return ViewAugmenter(ops(*args, **kwargs))

    factory.__doc__ = f"``ViewAugmenter`` of preset {name!r}: {ops.__doc__}"
    VIEWS.register(name)(factory)


for _name, _ops in PRESETS.items():
    _register(_name, _ops)
