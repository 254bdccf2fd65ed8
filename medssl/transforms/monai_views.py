"""The per-sample MONAI path of the view presets, for CPU DataLoader workers.

``monai_view_transform(preset, **kw)`` returns a MONAI ``Compose`` of dict transforms on key
``"image"`` (a ``(C, D, H, W)`` tensor or array) implementing the same :class:`OpSpec` list as
``VIEWS.build(preset, **kw)``, one sample at a time, and ending in a plain float32 tensor.

MONAI transforms reused as they are: ``RandFlipd`` (inside ``OneOf`` to pick the axis),
``RandCoarseDropoutd`` (one hole), ``RandSpatialCropd`` + ``Resized`` (trilinear), ``RandAffined``,
``RandBiasFieldd``. Two are subclassed because their sampling differs from the y-aware recipe:
``RandGaussianSmooth`` draws one sigma per axis (y-aware blurs isotropically) and
``RandGaussianNoise`` draws its std from ``U(0, std)`` (y-aware: ``U(0.1, 1)``). Sizes that depend on
the volume (cutout box, crop size, shift in voxels) are resolved per input shape by :class:`PerShape`.

Randomness comes from each transform's ``numpy.random.RandomState`` (``set_random_state(seed)``).
DataLoader workers start with copies of one state, so plain MONAI pipelines repeat the same views in
every worker and, without persistent workers, in every epoch; :class:`ViewCompose` reseeds itself
from each worker's torch seed (distinct per worker, reproducible from the loader's seed). The training
loop goes further and reseeds it per item from ``(seed, epoch, index)`` (``medssl.engine.sampling``),
so its views do not depend on the number of workers at all.
"""

from __future__ import annotations

import math
from functools import partial
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    Identityd,
    Lambdad,
    MapTransform,
    OneOf,
    RandAffined,
    RandBiasFieldd,
    RandCoarseDropoutd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandSpatialCropd,
    Resized,
)
from monai.transforms.intensity.array import RandGaussianNoise, RandGaussianSmooth
from monai.utils import MAX_SEED
from scipy.ndimage import gaussian_filter
from torch.utils.data import get_worker_info

from medssl.transforms.views import OpSpec, preset_ops

KEY = "image"


def seed_independently(transform: Randomizable, seed: int) -> None:
    """``transform.set_random_state(seed)``, then a seed of its own for every inner random transform.

    MONAI's dict transforms (and ``RandAffine``) hand their inner transform the *same* seed, so the
    outer Bernoulli(p) draw and the inner first parameter draw were the same number: e.g. noise applied
    only with std in U(0.1, 0.55), or view 2 blurred almost surely when view 1's blur was weak. Inner
    transforms are reseeded from the outer one's stream, recursively (reproducible from ``seed``).
    """
    transform.set_random_state(seed=seed)
    _decorrelate(transform, set())


def _decorrelate(transform: Randomizable, seen: set[int]) -> None:
    seen.add(id(transform))
    if isinstance(transform, Compose):  # Compose / OneOf already seeded their members one by one
        for member in transform.transforms:
            if isinstance(member, Randomizable) and id(member) not in seen:
                _decorrelate(member, seen)
    for inner in vars(transform).values():
        if isinstance(inner, Randomizable) and id(inner) not in seen:
            inner.set_random_state(seed=int(transform.R.randint(MAX_SEED, dtype="uint32")))
            _decorrelate(inner, seen)


class _IsotropicSmooth(RandGaussianSmooth):
    """``RandGaussianSmooth`` with one sigma for all axes (MONAI draws one per axis), filtering with
    ``scipy.ndimage.gaussian_filter`` (sampled taps summing to 1, edge-replicated borders), as the torch
    path and the y-aware authors do. MONAI's kernels differ: its default ``erf`` integrates each voxel
    (effective std 0.31 instead of 0.09 voxels at sigma = 0.3) and its ``sampled`` taps do not sum to 1.
    """

    def randomize(self, data: Any | None = None) -> None:
        super().randomize(data)
        self.y = self.z = self.x

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        array = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
        sigma = (0.0, *([self.x] * (array.ndim - 1)))  # channels are not mixed
        out = gaussian_filter(array, sigma=sigma, mode="nearest", truncate=4.0)
        return torch.from_numpy(out) if isinstance(img, torch.Tensor) else out


class RandIsotropicGaussianSmoothd(RandGaussianSmoothd):
    """``RandGaussianSmoothd`` with an isotropic ``sigma ~ U(sigma_range)`` (voxels)."""

    def __init__(self, keys: Any, sigma_range: Sequence[float], prob: float) -> None:
        super().__init__(keys, prob=prob)
        self.rand_smooth = _IsotropicSmooth(sigma_x=tuple(sigma_range), prob=1.0)


class _UniformStdNoise(RandGaussianNoise):
    """``RandGaussianNoise`` with ``std ~ U(low, high)`` (MONAI samples ``U(0, std)``)."""

    def __init__(self, std_range: Sequence[float]) -> None:
        super().__init__(prob=1.0, std=float(std_range[1]), sample_std=False)
        self.std_range = (float(std_range[0]), float(std_range[1]))

    def randomize(self, img: Any, mean: float | None = None) -> None:
        self.std = float(self.R.uniform(*self.std_range))
        super().randomize(img, mean)


class RandUniformStdGaussianNoised(RandGaussianNoised):
    """``RandGaussianNoised`` whose std is drawn from ``U(std_range)`` per call."""

    def __init__(self, keys: Any, std_range: Sequence[float], prob: float) -> None:
        super().__init__(keys, prob=prob)
        self.rand_gaussian_noise = _UniformStdNoise(std_range)


class PerShape(Randomizable, MapTransform):
    """Build (once per spatial shape) and apply a transform whose sizes depend on the input shape.

    Args:
        keys: keys to transform (all must share one spatial shape).
        factory: ``factory(shape (D, H, W)) -> transform``.
    """

    def __init__(self, keys: Any, factory: Callable[[tuple[int, ...]], Callable]) -> None:
        MapTransform.__init__(self, keys)
        self.factory = factory
        self._cache: dict[tuple[int, ...], Callable] = {}

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> PerShape:
        super().set_random_state(seed, state)
        self._cache.clear()
        return self

    def randomize(self, data: Any = None) -> None:  # the inner transform draws its own parameters
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        shape = tuple(int(n) for n in data[self.keys[0]].shape[1:])
        if shape not in self._cache:
            inner = self.factory(shape)
            if isinstance(inner, Randomizable):
                seed_independently(inner, int(self.R.randint(MAX_SEED, dtype="uint32")))
            self._cache[shape] = inner
        return self._cache[shape](dict(data))


def _flip(p: float, axes: Sequence[int]) -> Callable:
    return OneOf([RandFlipd(KEY, prob=p, spatial_axis=int(a)) for a in axes])


def _cutout(shape: tuple[int, ...], p: float, fraction: float, value: float) -> Callable:
    size = [max(1, math.ceil(fraction * n)) for n in shape]
    return RandCoarseDropoutd(KEY, holes=1, spatial_size=size, fill_value=value, prob=p)


def _crop_resize(shape: tuple[int, ...], p: float, scale: float) -> Callable:
    roi = [max(1, math.ceil(scale * n)) for n in shape]
    crop = Compose([RandSpatialCropd(KEY, roi_size=roi, random_size=False),
                    Resized(KEY, spatial_size=shape, mode="trilinear")])
    return crop if p >= 1 else OneOf([crop, Identityd(KEY)], weights=[p, 1 - p])


def _affine(shape: tuple[int, ...], p: float, rotate_deg: float, scale: float, translate: float) -> Callable:
    return RandAffined(KEY, prob=p, rotate_range=[math.radians(rotate_deg)] * 3,
                       scale_range=[scale] * 3, translate_range=[translate * n for n in shape],
                       mode="bilinear", padding_mode="border")


def _per_shape(factory: Callable[..., Callable]) -> Callable[..., PerShape]:
    """``(p, **params) -> PerShape`` of ``factory(shape, p, **params)`` (picklable for spawn workers)."""
    return lambda p, **params: PerShape(KEY, partial(factory, p=p, **params))


MONAI_OPS: dict[str, Callable[..., Callable]] = {
    "flip": _flip,
    "blur": lambda p, sigma: RandIsotropicGaussianSmoothd(KEY, sigma_range=sigma, prob=p),
    "noise": lambda p, sigma: RandUniformStdGaussianNoised(KEY, std_range=sigma, prob=p),
    "cutout": _per_shape(_cutout),
    "crop_resize": _per_shape(_crop_resize),
    "bias_field": lambda p, degree, coeff_range: RandBiasFieldd(KEY, degree=degree,
                                                                coeff_range=tuple(coeff_range), prob=p),
    "affine": _per_shape(_affine),
}


class ViewCompose(Compose):
    """``Compose`` that reseeds all its transforms once per DataLoader worker (per epoch unless the
    workers persist) from ``get_worker_info().seed``, unless ``set_random_state`` was called in that
    worker; in the main process it behaves as ``Compose``."""

    _worker_seed: int | None = None

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None
                         ) -> ViewCompose:
        """Reseed every transform, inner ones independently (:func:`seed_independently`); an explicit
        reseed inside a worker replaces the worker's seed."""
        super().set_random_state(seed, state)
        _decorrelate(self, set())
        info = get_worker_info()
        self._worker_seed = info.seed if info is not None else None
        return self

    def __call__(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        info = get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self.set_random_state(seed=info.seed % MAX_SEED)
        return super().__call__(data, *args, **kwargs)


def _copy(image: Any) -> Any:
    return image.clone() if isinstance(image, torch.Tensor) else np.array(image, copy=True)


def monai_transform(specs: Sequence[OpSpec]) -> ViewCompose:
    """A :class:`ViewCompose` for an :class:`OpSpec` list, ending in a float32 ``torch.Tensor``.

    The image is copied first: some MONAI transforms (``RandCoarseDropoutd``) write into their input,
    which would leak one view's cutout into the sample and the next view.
    """
    ops = [MONAI_OPS[s.name](s.p, **s.params) for s in specs if s.p > 0]
    first = [Lambdad(KEY, _copy)] if ops else []
    last = EnsureTyped(KEY, data_type="tensor", dtype=torch.float32, track_meta=False)
    return ViewCompose([*first, *ops, last])


def monai_view_transform(preset: str, **kwargs: Any) -> ViewCompose:
    """Per-sample MONAI pipeline of ``preset`` (kwargs as for ``VIEWS.build(preset, **kwargs)``).

    Returns:
        ``ViewCompose`` mapping ``{"image": (C, D, H, W)} -> {"image": float32 tensor (C, D, H, W)}``;
        each call draws new parameters.
    """
    return monai_transform(preset_ops(preset, **kwargs))
