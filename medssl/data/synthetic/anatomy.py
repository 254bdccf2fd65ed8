"""The template anatomy of the synthetic cohort, from the MNI152 (ICBM 2009a) maps shipped in nilearn.

``load_anatomy(shape)`` resamples nilearn's T1 template, GM and WM probability maps and brain mask (no
download) to an isotropic grid of ``shape`` that just covers the brain (8 % margin): block-average by an
integer factor, Gaussian anti-aliasing, then trilinear ``scipy.ndimage.affine_transform``. CSF is not
shipped, so ``csf = clip(brain - gm - wm, 0, 1)``. It also builds normalised brain coordinates
``u in [-1, 1]^3`` (x right, y anterior, z superior) for the regional effects, and locates the lateral
ventricles (central CSF).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import ndimage

MARGIN = 1.08

# Regions as Gaussian blobs in normalised brain coordinates: name -> ((x, y, z) centres, width).
# Bilateral regions list both hemispheres.
REGIONS = {
    "frontal": ([(-0.4, 0.65, 0.3), (0.4, 0.65, 0.3)], 0.3),
    "temporal": ([(-0.75, 0.1, -0.35), (0.75, 0.1, -0.35)], 0.25),
    "hippocampus": ([(-0.35, -0.1, -0.3), (0.35, -0.1, -0.3)], 0.15),
    "insula": ([(-0.5, 0.15, 0.0), (0.5, 0.15, 0.0)], 0.15),
    "cingulate": ([(0.0, 0.2, 0.35)], 0.2),
    "parietal": ([(-0.45, -0.5, 0.5), (0.45, -0.5, 0.5)], 0.3),
    "occipital": ([(0.0, -0.85, 0.05)], 0.25),
    "thalamus": ([(-0.12, -0.15, 0.05), (0.12, -0.15, 0.05)], 0.12),
}


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Template maps on the synthetic grid; all arrays are float32 ``(D, H, W)`` unless stated."""

    shape: tuple[int, int, int]
    affine: np.ndarray  # (4, 4) voxel -> MNI mm
    t1: np.ndarray  # T1 template intensities in [0, 1]
    gm: np.ndarray  # GM probability
    wm: np.ndarray  # WM probability
    csf: np.ndarray  # CSF probability (brain - gm - wm)
    brain: np.ndarray  # soft brain mask in [0, 1]
    coords: np.ndarray  # (3, D, H, W) normalised brain coordinates
    ventricle_center: np.ndarray  # (3,) voxel coordinates
    ventricle_radius: float  # voxels
    regions: dict[str, np.ndarray]  # name -> blob map (max 1) of ``REGIONS``

    def region(self, name: str) -> np.ndarray:
        """Blob map of a named region, max 1, as float32 ``(D, H, W)``."""
        return self.regions[name]


def _region_map(coords: np.ndarray, centres: list[tuple[float, float, float]], width: float) -> np.ndarray:
    out = np.zeros(coords.shape[1:], dtype=np.float32)
    for centre in centres:
        d2 = sum((coords[a] - centre[a]) ** 2 for a in range(3))
        out = np.maximum(out, np.exp(-d2 / (2 * width**2)))
    return out


def _templates() -> dict[str, np.ndarray]:
    from nilearn import datasets  # deferred: slow import (~0.4 s after medssl.data), used once per process

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "brain": datasets.load_mni152_brain_mask,
    }
    images = {name: load(resolution=1) for name, load in loaders.items()}
    arrays = {name: np.asarray(img.dataobj, dtype=np.float32) for name, img in images.items()}
    arrays["affine"] = images["t1"].affine
    return arrays


def _block_mean(volume: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return volume
    d, h, w = (s // k * k for s in volume.shape)
    v = volume[:d, :h, :w].reshape(d // k, k, h // k, k, w // k, k)
    return v.mean(axis=(1, 3, 5))


@lru_cache(maxsize=4)
def load_anatomy(shape: tuple[int, int, int] = (32, 40, 32)) -> Anatomy:
    """Template anatomy resampled to ``shape`` (cached per process)."""
    shape_arr = np.asarray(shape, dtype=np.float64)
    maps = _templates()
    inside = maps["brain"] > 0
    axes = [np.flatnonzero(inside.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    lo, hi = np.array([ax[0] for ax in axes], float), np.array([ax[-1] for ax in axes], float)
    centre = (lo + hi) / 2
    voxel = float(((hi - lo + 1) * MARGIN / shape_arr).max())  # template voxels (1 mm) per output voxel
    k = max(1, int(voxel // 2))
    start = centre - voxel * (shape_arr - 1) / 2  # template index of output voxel 0
    out = {}
    for name in ("t1", "gm", "wm", "brain"):
        reduced = ndimage.gaussian_filter(_block_mean(maps[name], k), sigma=0.35 * voxel / k)
        out[name] = ndimage.affine_transform(
            reduced, np.full(3, voxel / k), offset=(start - (k - 1) / 2) / k,
            output_shape=tuple(int(s) for s in shape), order=1, mode="constant", cval=0.0,
        ).astype(np.float32)  # fmt: skip
    out["csf"] = np.clip(out["brain"] - out["gm"] - out["wm"], 0, 1).astype(np.float32)
    affine = maps["affine"] @ np.block([[np.diag(np.full(3, voxel)), start[:, None]], [np.zeros((1, 3)), 1]])
    grid = np.indices(tuple(int(s) for s in shape), dtype=np.float32)
    half = (hi - lo) / 2
    coords = np.stack([(start[a] + voxel * grid[a] - centre[a]) / half[a] for a in range(3)])
    coords[0] *= np.sign(affine[0, 0])  # x grows to the right in MNI space
    central = np.exp(-(coords[0] ** 2 / 0.08 + coords[1] ** 2 / 0.3 + (coords[2] - 0.1) ** 2 / 0.15))
    vent = out["csf"] * central
    vent_centre = np.array([(grid[a] * vent).sum() / vent.sum() for a in range(3)])
    radius = 0.3 * float(np.mean((hi - lo) / 2 / voxel))
    return Anatomy(
        tuple(int(s) for s in shape), affine, out["t1"], out["gm"], out["wm"], out["csf"],
        np.clip(out["brain"], 0, 1), coords.astype(np.float32), vent_centre, radius,
        {name: _region_map(coords, c, w) for name, (c, w) in REGIONS.items()},
    )  # fmt: skip
