"""The generative model of synthetic scans, in torch, batched over subjects on any device (docs/data.md).

Anatomy: template tissue maps (``anatomy.py``) are changed by age (three regional GM-loss processes with
their own age curves, an inverted-U WM curve, lost tissue becomes CSF) and diagnosis, then warped by
``phi(x) = x + u(x)`` where ``u = u_rand + u_vent (+ u_site)``: a smooth random field (white noise blurred
with sigma 12 % of the largest side, std 4 % of the smallest side, per component) plus a radial
ventricular expansion ``u_vent = -a(age) w(x) (x - c)``, ``w = exp(-|x - c|^2 / 2r^2)``, plus the site's
geometric distortion (``hard`` preset).
- ``quasiraw``: T1-like contrast ``c_csf CSF + c_gm GM + c_wm WM`` of the warped maps, skull-stripped
  (head size removed, as by the 9-dof affine registration of OpenBHB's quasi-raw images).
- ``vbm``: modulated GM in template space:
  ``GM_eff(x + 0.2 u_rand + u_vent + u_site) * s^3 / det(I + grad(0.3 u_rand))`` (residual
  misregistration, the ventricular expansion, Jacobian modulation), ``s^3 = TIV / 1400 cm^3``.
Scanner (site) effects, per modality: multiplicative bias field (quadratic polynomial), Gaussian blur,
intensity scale and offset, additive noise, each drawn per site and jittered per subject.

Where the work happens. On the host, per subject, from numpy streams (so identical on every device):
the scalar parameters (``draw_scan``) and the smooth fields on a coarse grid (``CoarseGrid``, nodes every
``sigma / 2`` of ``u_rand``): the random warp (its noise drawn with a halo, blurred "valid", scaled by the
blurred noise's expected std), the site distortion, the Jacobian modulation and the bias fields. On the
device, batched (``simulate_batch``), in float32 at full resolution: the coarse fields interpolated
(trilinear, one axis at a time), the tissue maps, the warps (``grid_sample``, trilinear, zeros outside),
texture, blur (separable Gaussian matrices, scipy's ``reflect`` boundary) and noise. The voxel noise
(texture, scanner noise) comes from a torch generator per subject and field on the device: CUDA and CPU
draw different values from the same distribution, so their volumes differ only by that noise.
Batch invariance: every step is per voxel or per subject (matrix products, ``exp`` and random draws
run once per subject), so a subject's volume does not depend on the batch it is simulated in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from medssl.data.synthetic.anatomy import load_anatomy
from medssl.data.synthetic.design import Preset, ScannerPrior

MODALITIES = ("vbm", "quasiraw")
# Diagnosis-specific effects: fractional GM change per region and extra ventricular expansion.
DIAGNOSIS_EFFECTS: dict[str, dict[str, float]] = {
    "scz": {"frontal": -0.09, "temporal": -0.09, "insula": -0.09, "hippocampus": -0.07, "ventricles": 0.1},
    "bd": {"insula": -0.07, "cingulate": -0.08, "hippocampus": -0.05, "ventricles": 0.05},
    "asd": {"frontal": 0.05, "temporal": -0.05, "cingulate": -0.06, "ventricles": 0.02},
}
DIAGNOSIS_REGIONS = sorted({r for fx in DIAGNOSIS_EFFECTS.values() for r in fx if r != "ventricles"})
# VBM: fraction of the random warp left by registration, and of it that the Jacobian modulation keeps
# as individual regional volume (det(I + grad(0.3 u)) has ~9 % std in GM); the ventricular expansion is
# not registered out (periventricular GM is displaced).
VBM_RESIDUAL, VBM_VOLUME = 0.2, 0.3
# Three age processes, each a regional GM log-loss pattern ``base + sum_r w_r b_r(x)`` (``anatomy.REGIONS``)
# times its own curve of age (``age_curves``): adolescent pruning of dorsal cortex, slow adult loss,
# late (accelerating) medial-temporal atrophy. Different shapes in time and space make age non-linear.
AGE_PATTERNS: dict[str, tuple[float, dict[str, float]]] = {
    "pruning": (0.2, {"frontal": 1.2, "parietal": 1.0, "cingulate": 0.6}),
    "adult": (0.3, {"frontal": 1.0, "insula": 0.8, "temporal": 0.6, "thalamus": 0.6}),
    "late": (0.2, {"hippocampus": 1.6, "temporal": 1.2, "insula": 0.8, "parietal": 0.4}),
}
SMOOTHNESS, WARP_STD = 0.12, 0.04  # u_rand: sigma (fraction of the largest side), std (of the smallest)
NODES_PER_SIGMA = 2.0  # coarse-grid node spacing = sigma / 2
TRUNCATE = 4.0  # Gaussian kernels end at int(4 sigma + 0.5) (scipy.ndimage's rule)
TEXTURE_STD, TEXTURE_SIGMA = 0.08, 0.7  # quasiraw texture: 1 + blur(N(0, 0.08), 0.7 voxel)
MIN_BLUR = 0.05  # scanner blur below this sigma is skipped


def age_curves(age: np.ndarray) -> np.ndarray:
    """GM log-loss of each age process, ``(B,) -> (B, 3)`` in ``AGE_PATTERNS`` order: pruning
    ``0.3 (1 - exp(-(age - 6)_+ / 8))`` (saturates by ~25), adult ``0.005 (age - 6)``, late
    ``0.45 ((age - 40)_+ / 48)^2``."""
    age = np.asarray(age, dtype=np.float64)
    return np.stack([
        0.3 * (1.0 - np.exp(-np.maximum(age - 6.0, 0.0) / 8.0)),
        0.005 * (age - 6.0),
        0.45 * (np.maximum(age - 40.0, 0.0) / 48.0) ** 2,
    ], axis=-1)  # fmt: skip


def wm_factor(age: np.ndarray) -> np.ndarray:
    """Inverted-U WM curve peaking at 45 years: ``1 - 0.1 ((age - 45) / 40)^2`` (at most 1)."""
    return 1.0 - 0.1 * ((np.asarray(age, dtype=np.float64) - 45.0) / 40.0) ** 2


def ventricle_expansion(age: np.ndarray) -> np.ndarray:
    """a(age): strength of the radial ventricular expansion, linear after 20, quadratic after 40."""
    age = np.asarray(age, dtype=np.float64)
    return 0.05 + 0.003 * np.maximum(age - 20.0, 0.0) + 0.4 * (np.maximum(age - 40.0, 0.0) / 48.0) ** 2


@dataclasses.dataclass(frozen=True)
class ScannerEffects:
    """One site's (or, jittered, one scan's) acquisition signature for one modality."""

    scale: float
    offset: float
    blur: float  # Gaussian sigma, voxels
    noise: float  # additive noise std
    bias: tuple[float, ...]  # 9 coefficients of the log bias field on (x, y, z, x^2, ..., xy, xz, yz)
    gm_contrast: float = 0.0  # quasiraw only: shift of the GM intensity


def draw_scanner(rng: np.random.Generator, prior: ScannerPrior) -> ScannerEffects:
    """One site's effects for one modality, drawn from ``prior`` (``design.PRESETS``)."""
    return ScannerEffects(
        scale=float(np.exp(rng.normal(0, prior.scale_sd))),
        offset=float(rng.normal(0, prior.offset_sd)) if prior.offset_sd else 0.0,
        blur=float(rng.uniform(0.0, prior.blur_max)),
        noise=float(rng.uniform(*prior.noise)),
        bias=tuple(float(b) for b in rng.normal(0, prior.bias_sd, size=9)),
        gm_contrast=float(rng.normal(0, prior.gm_contrast_sd)) if prior.gm_contrast_sd else 0.0,
    )


def _jitter(effects: ScannerEffects, rng: np.random.Generator) -> ScannerEffects:
    """Per-scan variation of a site's effects (3 % scale, 20 % blur and noise)."""
    return dataclasses.replace(
        effects,
        scale=effects.scale * float(np.exp(rng.normal(0, 0.03))),
        blur=effects.blur * float(rng.uniform(0.8, 1.2)),
        noise=effects.noise * float(rng.uniform(0.8, 1.2)),
    )


def gaussian_taps(sigma: float) -> np.ndarray:
    """scipy.ndimage's 1D Gaussian kernel: radius ``int(4 sigma + 0.5)``, weights summing to 1, float64."""
    radius = int(TRUNCATE * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def reflect_shifts(n: int, radius: int) -> np.ndarray:
    """``(2 radius + 1, n, n)`` 0/1 matrices ``P_t[i, j] = [j == reflect(i + t)]``, ``t = -radius..radius``,
    with scipy's ``reflect`` boundary (``d c b a | a b c d | d c b a``)."""
    j = np.arange(n)[None, :] + np.arange(-radius, radius + 1)[:, None]  # (T, n)
    j = np.mod(j, 2 * n)
    j = np.where(j >= n, 2 * n - 1 - j, j)
    out = np.zeros((2 * radius + 1, n, n))
    out[np.arange(2 * radius + 1)[:, None], np.arange(n)[None, :], j] = 1.0
    return out


def lerp_positions(n_fine: int, n_coarse: int) -> tuple[list[int], list[float]]:
    """Linear interpolation from ``n_coarse`` nodes at ``j (n_fine - 1) / (n_coarse - 1)`` (align-corners)
    to every fine index ``i``: ``value_i = lerp(node[lo_i], node[lo_i + 1], frac_i)``; returns ``(lo, frac)``."""
    pos = np.arange(n_fine) * (n_coarse - 1) / (n_fine - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_coarse - 2)
    return [int(j) for j in lo], [float(f) for f in pos - lo]


def band_blocks(n: int, radius: int, block: int | None) -> list[tuple[int, int, int, int]]:
    """Row blocks ``(s, e)`` of an ``(n, n)`` band matrix of half-width ``radius`` and the columns ``(a, c)``
    they touch; one block of everything when ``block`` is None."""
    if block is None:
        return [(0, n, 0, n)]
    return [(s, min(s + block, n), max(0, s - radius), min(n, s + block + radius)) for s in range(0, n, block)]


@dataclasses.dataclass(frozen=True)
class CoarseGrid:
    """The coarse grid of the smooth fields of a ``shape``; host side, float64.

    Nodes along axis ``a`` sit at voxel ``j s_a``, ``s_a = (N_a - 1) / (n_a - 1)`` (about ``sigma / 2``
    of u_rand, at most one per voxel). A random field is white noise on the nodes plus ``halo`` each side,
    blurred "valid" by ``kernels[a]`` ``(n_a, n_a + 2 halo)`` (Gaussian of sigma ``sigma / s_a`` nodes),
    divided by ``gain`` (its expected std).
    """

    shape: tuple[int, int, int]
    nodes: tuple[int, int, int]
    halo: int
    kernels: tuple[np.ndarray, np.ndarray, np.ndarray]
    gain: float
    coords: tuple[np.ndarray, np.ndarray, np.ndarray]  # normalised brain coordinate of each node, per axis

    @property
    def noise_shape(self) -> tuple[int, int, int, int]:
        """``(3, n_d + 2 halo, n_h + 2 halo, n_w + 2 halo)``: the white noise behind one vector field."""
        return (3, *(n + 2 * self.halo for n in self.nodes))  # type: ignore[return-value]

    def field(self, noise: np.ndarray, std: float) -> np.ndarray:
        """``(3, n_d, n_h, n_w)`` smooth vector field with expected std ``std`` per component."""
        out = noise
        for axis, kernel in enumerate(self.kernels):
            out = np.moveaxis(np.tensordot(kernel, out, axes=(1, axis + 1)), 0, axis + 1)
        return out * (std / self.gain)

    def spacing(self) -> np.ndarray:
        """``(3,)`` voxels between nodes along each axis."""
        return np.array([(n_fine - 1) / max(n - 1, 1) for n_fine, n in zip(self.shape, self.nodes)])


@lru_cache(maxsize=8)
def coarse_grid(shape: tuple[int, int, int]) -> CoarseGrid:
    """The coarse grid of ``shape`` (cached); its node coordinates come from ``load_anatomy(shape)``."""
    sigma = SMOOTHNESS * max(shape)
    nodes = tuple(min(n, math.ceil((n - 1) * NODES_PER_SIGMA / sigma) + 1) for n in shape)
    spacing = [(n - 1) / max(k - 1, 1) for n, k in zip(shape, nodes)]
    halo = int(TRUNCATE * sigma / min(spacing) + 0.5)
    kernels, gain = [], 1.0
    for k, s in zip(nodes, spacing):
        taps = np.exp(-0.5 * (np.arange(-halo, halo + 1) * s / sigma) ** 2)
        taps /= taps.sum()
        kernel = np.zeros((k, k + 2 * halo))
        for i in range(k):
            kernel[i, i : i + 2 * halo + 1] = taps
        kernels.append(kernel)
        gain *= float(np.sqrt((taps**2).sum()))
    coords = load_anatomy(shape).coords  # affine in the voxel index along its own axis
    profiles = (coords[0][:, 0, 0], coords[1][0, :, 0], coords[2][0, 0, :])
    node_coords = tuple(np.interp(np.arange(k) * s, np.arange(len(p)), p) for p, k, s in zip(profiles, nodes, spacing))
    return CoarseGrid(tuple(shape), nodes, halo, tuple(kernels), gain, node_coords)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Site:
    """One site: its scanner per modality and its geometric distortion ``(3, n_d, n_h, n_w)`` (voxels)."""

    scanners: dict[str, ScannerEffects]
    distortion: np.ndarray


def draw_site(rng: np.random.Generator, preset: Preset, grid: CoarseGrid) -> Site:
    """A site's scanners (``preset.scanners``) and distortion (std ``preset.distortion`` x smallest side)."""
    scanners = {m: draw_scanner(rng, preset.scanners[m]) for m in MODALITIES}
    distortion = grid.field(rng.standard_normal(grid.noise_shape), preset.distortion * min(grid.shape))
    return Site(scanners, distortion)


@dataclasses.dataclass(frozen=True)
class Scan:
    """Host-side parameters of one subject's scans (``draw_scan``); everything the device needs.

    ``fields[m]``: ``(n_d, n_h, n_w, 4)`` float32 coarse channels of modality ``m``: the sampling grid
    ``x + u`` in ``grid_sample``'s normalised (x=W, y=H, z=D) units without the ventricular term, and a
    gain: the bias field, times (vbm) the modulation ``(TIV / 1400) / clip(det(I + grad(0.3 u_rand)), 0.3, 3)``.
    ``seeds``: torch generator seeds of the voxel noise fields (``texture``, ``quasiraw``, ``vbm``).
    """

    age: float
    tiv: float
    diagnosis: str
    severity: float
    ventricles: float  # a: strength of the ventricular expansion
    scanners: dict[str, ScannerEffects]
    fields: dict[str, np.ndarray]
    seeds: dict[str, int]


def _bias_terms(grid: CoarseGrid) -> np.ndarray:
    """``(9, n_d, n_h, n_w)``: x, y, z, x^2 - 0.3, y^2 - 0.3, z^2 - 0.3, xy, xz, yz at the nodes."""
    x, y, z = np.meshgrid(*grid.coords, indexing="ij")
    return np.stack([x, y, z, x * x - 0.3, y * y - 0.3, z * z - 0.3, x * y, x * z, y * z])


def _jacobian_det(u: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` of a displacement ``(3, n_d, n_h, n_w)`` sampled every ``spacing`` voxels
    (central differences, one-sided at the edges)."""
    m = [[np.gradient(u[a], spacing[b], axis=b) + (a == b) for b in range(3)] for a in range(3)]
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))  # fmt: skip


def _grid_channels(grid: CoarseGrid, displacement: np.ndarray) -> list[np.ndarray]:
    """``grid_sample`` coordinates (x, y, z) of the nodes moved by ``displacement`` (voxels, D/H/W order)."""
    pos = np.meshgrid(*(np.arange(n) * s for n, s in zip(grid.nodes, grid.spacing())), indexing="ij")
    normalised = [(pos[a] + displacement[a]) * (2.0 / (grid.shape[a] - 1)) - 1.0 for a in range(3)]
    return normalised[::-1]


def draw_scan(rng: np.random.Generator, age: float, tiv: float, diagnosis: str, severity: float, site: Site,
              grid: CoarseGrid) -> Scan:  # fmt: skip
    """One subject's parameters and coarse fields, from its own stream ``rng`` (draw order is fixed)."""
    u_rand = grid.field(rng.standard_normal(grid.noise_shape), WARP_STD * min(grid.shape))
    a = ventricle_expansion(age) + severity * DIAGNOSIS_EFFECTS.get(diagnosis, {}).get("ventricles", 0.0)
    a = max(float(a) + rng.normal(0, 0.03), 0.0)
    scanners = {m: _jitter(site.scanners[m], rng) for m in MODALITIES}
    seeds = {name: int(rng.integers(2**63)) for name in ("texture", "quasiraw", "vbm")}
    terms = _bias_terms(grid)
    bias = {m: np.exp(np.tensordot(np.asarray(scanners[m].bias), terms, axes=1)) for m in MODALITIES}
    modulation = (tiv / 1400.0) / np.clip(_jacobian_det(VBM_VOLUME * u_rand, grid.spacing()), 0.3, 3.0)
    fields = {
        "quasiraw": _grid_channels(grid, u_rand + site.distortion) + [bias["quasiraw"]],
        "vbm": _grid_channels(grid, VBM_RESIDUAL * u_rand + site.distortion) + [bias["vbm"] * modulation],
    }
    fields = {m: np.stack(channels, axis=-1).astype(np.float32) for m, channels in fields.items()}
    return Scan(float(age), float(tiv), diagnosis, float(severity), a, scanners, fields, seeds)


BLUR_BLOCK = {"cpu": 16, "cuda": None}  # rows per band block of a blur (CPU: skips the zeros; CUDA: one product)


@dataclasses.dataclass(frozen=True)
class Blur:
    """A separable Gaussian blur of one grid: per axis the ``(n, n)`` matrix of scipy's
    ``gaussian_filter1d(sigma, mode="reflect")`` and its band blocks (``blur_operator``)."""

    matrices: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    blocks: tuple[list[tuple[int, int, int, int]], ...]

    def __call__(self, volume: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Blur one ``(D, H, W)`` volume (into ``out``, which may be ``volume``: only the last product, of
        an intermediate, writes it)."""
        d, h, w = volume.shape
        (md, mh, mw), (bd, bh, _) = self.matrices, self.blocks
        flat, x = volume.reshape(d, h * w), volume.new_empty((d, h * w))
        for s, e, a, c in bd:
            torch.mm(md[s:e, a:c], flat[a:c], out=x[s:e])
        x = x.view(d, h, w)
        if len(bh) == 1:
            y = torch.matmul(mh, x)
        else:
            y = torch.empty_like(x)
            for s, e, a, c in bh:
                y[:, s:e] = torch.matmul(mh[s:e, a:c], x[:, a:c])
        return torch.matmul(y, mw.T, out=out)


@lru_cache(maxsize=64)
def _shifts(n: int, radius: int, device: str) -> torch.Tensor:
    return torch.as_tensor(reflect_shifts(n, radius), dtype=torch.float32, device=device)


def padded_taps(sigma: float, radius: int) -> np.ndarray:
    """``gaussian_taps(sigma)`` centred in ``2 radius + 1`` entries (zeros outside its own radius)."""
    taps = gaussian_taps(sigma)
    pad = radius - (len(taps) - 1) // 2
    return np.pad(taps, (pad, pad))


def blur_from_taps(taps: torch.Tensor, radius: int, shape: tuple[int, ...]) -> Blur:
    """The blur whose per-axis matrices are ``sum_t taps_t P_t`` (``reflect_shifts``; ``taps`` a device
    tensor of ``2 R + 1`` entries, zero beyond ``radius``): each entry is a sum of at most two float32
    taps, so exact and the same on any device. No host sync."""
    device = str(taps.device)
    wide = (len(taps) - 1) // 2
    matrices = tuple(torch.tensordot(taps, _shifts(n, wide, device), dims=1) for n in shape)
    block = BLUR_BLOCK[taps.device.type]
    return Blur(matrices, tuple(band_blocks(n, radius, block) for n in shape))  # type: ignore[arg-type]


def blur_operator(sigma: float, shape: tuple[int, ...], device: str) -> Blur:
    """The blur of ``sigma`` voxels on ``shape``, on ``device`` (setup and tests: copies its taps)."""
    taps = gaussian_taps(sigma)
    return blur_from_taps(torch.as_tensor(taps, dtype=torch.float32, device=device), (len(taps) - 1) // 2, shape)


@dataclasses.dataclass(frozen=True)
class DeviceAnatomy:
    """The template maps and operators of one grid on one device (float32; ``device_anatomy``)."""

    shape: tuple[int, int, int]
    device: torch.device
    gm: torch.Tensor  # (D, H, W)
    wm: torch.Tensor
    csf: torch.Tensor
    brain: torch.Tensor
    support: torch.Tensor  # brain > 0.1, the VBM mask
    patterns: torch.Tensor  # (3, D*H*W) GM log-loss pattern of each age process
    regions: dict[str, torch.Tensor]  # DIAGNOSIS_REGIONS -> (D, H, W)
    ventricles: torch.Tensor  # (D, H, W, 3): w(x) (x - c) in grid_sample units (x, y, z)
    upsample: tuple[tuple[list[int], list[float]], ...]  # per axis, coarse nodes -> voxels (lerp_positions)
    texture: Blur


@lru_cache(maxsize=4)
def device_anatomy(shape: tuple[int, int, int], device: str) -> DeviceAnatomy:
    """``load_anatomy(shape)`` and its operators on ``device`` (cached per shape and device)."""
    anat, grid, dev = load_anatomy(shape), coarse_grid(shape), torch.device(device)

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=dev)

    patterns = np.stack([base + sum(w * anat.region(r) for r, w in weights.items())
                         for base, weights in AGE_PATTERNS.values()])  # fmt: skip
    rel = np.indices(shape, dtype=np.float64) - anat.ventricle_center[:, None, None, None]
    vent = np.exp(-(rel**2).sum(0) / (2 * anat.ventricle_radius**2)) * rel
    vent = np.stack([vent[a] * (2.0 / (shape[a] - 1)) for a in (2, 1, 0)], axis=-1)
    return DeviceAnatomy(
        tuple(shape), dev, put(anat.gm), put(anat.wm), put(anat.csf), put(anat.brain), put(anat.brain > 0.1),
        put(patterns.reshape(3, -1)), {r: put(anat.region(r)) for r in DIAGNOSIS_REGIONS}, put(vent),
        tuple(lerp_positions(n, k) for n, k in zip(shape, grid.nodes)), blur_operator(TEXTURE_SIGMA, shape, device),
    )  # fmt: skip


def _lerp_axis(x: torch.Tensor, axis: int, positions: tuple[list[int], list[float]]) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``axis`` to ``len(lo)`` points (one lerp per output slice)."""
    lo, frac = positions
    out = x.new_empty((*x.shape[:axis], len(lo), *x.shape[axis + 1 :]))
    for i, (j, f) in enumerate(zip(lo, frac)):
        torch.lerp(x.select(axis, j), x.select(axis, j + 1), f, out=out.select(axis, i))
    return out


def upsample(coarse: torch.Tensor, anat: DeviceAnatomy) -> torch.Tensor:
    """``(B, n_d, n_h, n_w, C) -> (B, D, H, W, C)``: trilinear (align-corners), one axis at a time."""
    for axis in (3, 2, 1):
        coarse = _lerp_axis(coarse, axis, anat.upsample[axis - 1])
    return coarse


def _normal(shape: tuple[int, ...], std: Sequence[float], seeds: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(B, *shape)`` Gaussian noise, subject ``b`` from its own generator seeded ``seeds[b]``."""
    out = torch.empty((len(seeds), *shape), device=device)
    generator = torch.Generator(device=device)
    for b, (s, seed) in enumerate(zip(std, seeds)):
        generator.manual_seed(seed)
        out[b].normal_(0.0, s, generator=generator)
    return out


def upload(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Host arrays as float32 tensors on ``device``: on CUDA through one pinned, non-blocking copy (no
    host sync), on a CPU as views of one buffer."""
    flat = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays.values()]))
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    out, start = {}, 0
    for name, array in arrays.items():
        size = int(np.prod(np.shape(array)))
        out[name] = flat[start : start + size].view(np.shape(array))
        start += size
    return out


def _tissue_params(ages: Sequence[float], diagnoses: Sequence[str],
                   severities: Sequence[float]) -> dict[str, np.ndarray]:
    """``curves`` (B, 3): minus the age curves; ``effects`` (B, R): severity x diagnosis effect per region."""
    effects = [[s * DIAGNOSIS_EFFECTS.get(d, {}).get(r, 0.0) for r in DIAGNOSIS_REGIONS]
               for d, s in zip(diagnoses, severities)]
    return {"curves": -age_curves(np.asarray(ages)), "effects": np.array(effects).reshape(len(ages), -1)}


def _grey_matter(anat: DeviceAnatomy, curves: torch.Tensor, effects: torch.Tensor,
                 regions: Sequence[int]) -> torch.Tensor:
    gm = torch.empty((len(curves), *anat.shape), device=anat.device)
    for b in range(len(curves)):
        torch.exp(torch.mv(anat.patterns.T, curves[b]), out=gm[b].view(-1))
    gm *= anat.gm
    for r in regions:  # regions whose effect is 0 for every subject: a factor of exactly 1, skipped
        gm *= 1.0 + effects[:, r, None, None, None] * anat.regions[DIAGNOSIS_REGIONS[r]]
    return gm


def grey_matter(anat: DeviceAnatomy, ages: Sequence[float], diagnoses: Sequence[str],
                severities: Sequence[float]) -> torch.Tensor:  # fmt: skip
    """``(B, D, H, W)`` template-space GM after age and diagnosis:
    ``GM(x) exp(-sum_p f_p(age) s_p(x)) prod_r (1 + severity e_r b_r(x))``."""
    params = _tissue_params(ages, diagnoses, severities)
    regions = np.flatnonzero(params["effects"].any(0))
    return _grey_matter(anat, **upload(params, anat.device), regions=regions)


def _batch_params(scans: Sequence[Scan], modalities: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Everything the device needs from the host, as arrays, and each modality's blur radius (max over
    the batch); subject ``b``'s values are row ``b`` (no value depends on another subject)."""
    ages = np.array([s.age for s in scans])
    params = _tissue_params(ages, [s.diagnosis for s in scans], [s.severity for s in scans])
    params["fields"] = np.stack([np.concatenate([s.fields[m] for m in modalities], axis=-1) for s in scans])
    params["ventricles"] = -np.array([s.ventricles for s in scans])
    radius = {}
    for m in modalities:
        fx = [s.scanners[m] for s in scans]
        radius[m] = max(int(TRUNCATE * f.blur + 0.5) for f in fx)
        params[f"{m}_taps"] = np.stack([padded_taps(max(f.blur, MIN_BLUR), radius[m]) for f in fx])
        params[f"{m}_scale"] = np.array([f.scale for f in fx])
        params[f"{m}_offset"] = np.array([f.offset for f in fx])
    wm_scale = wm_factor(ages)
    params["wm_lost"] = 1.0 - wm_scale
    params["c_gm"] = 0.45 + 0.001 * (ages - 40.0) + np.array([s.scanners["quasiraw"].gm_contrast for s in scans])
    params["c_wm"] = (0.8 - 0.0015 * np.maximum(ages - 40.0, 0.0)) * wm_scale
    return params, radius


def _scanner(volume: torch.Tensor, mask: torch.Tensor, scans: Sequence[Scan], modality: str,
             params: dict[str, torch.Tensor], radius: int, relative_noise: bool) -> torch.Tensor:  # fmt: skip
    """In place: ``clip(mask (scale (blur(volume) + noise) + offset), 0)``; with ``relative_noise`` the noise
    is multiplied by the blurred signal (VBM maps: no noise where there is no GM). ``volume`` already
    holds the bias field."""
    for b, scan in enumerate(scans):
        if scan.scanners[modality].blur > MIN_BLUR:
            own = int(TRUNCATE * scan.scanners[modality].blur + 0.5)
            blur_from_taps(params[f"{modality}_taps"][b], own, volume.shape[1:])(volume[b], out=volume[b])
    noise = _normal(volume.shape[1:], [s.scanners[modality].noise for s in scans],
                    [s.seeds[modality] for s in scans], volume.device)  # fmt: skip
    if relative_noise:
        noise *= volume
    volume += noise
    volume *= params[f"{modality}_scale"].view(-1, 1, 1, 1)
    volume += params[f"{modality}_offset"].view(-1, 1, 1, 1)
    volume *= mask
    return volume.clamp_(min=0.0)


@torch.no_grad()
def simulate_batch(anat: DeviceAnatomy, scans: Sequence[Scan], modalities: Sequence[str] = MODALITIES
                   ) -> dict[str, torch.Tensor]:  # fmt: skip
    """The subjects' volumes ``{modality: (B, D, H, W)}`` float32 on ``anat.device``, queued without a
    host sync (the host values travel in one non-blocking copy, ``upload``).

    Subject ``b`` depends on ``scans[b]`` only (batch invariant, see the module docstring).
    """
    host, radius = _batch_params(scans, modalities)
    params = upload(host, anat.device)
    cuda = anat.device.type == "cuda"
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    if cuda:  # full fp32 products whatever the caller set (CPU batches may run in parallel threads)
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fields = upsample(params["fields"], anat)  # (B, D, H, W, 4 per modality)
        vent = params["ventricles"].view(-1, 1, 1, 1, 1) * anat.ventricles  # (B, D, H, W, 3)
        gm = _grey_matter(anat, params["curves"], params["effects"], np.flatnonzero(host["effects"].any(0)))
        out = {}
        for k, modality in enumerate(modalities):
            grid, gain = fields[..., 4 * k : 4 * k + 3] + vent, fields[..., 4 * k + 3]
            if modality == "quasiraw":
                out[modality] = _quasiraw(anat, scans, params, gm, grid, gain, radius[modality])
            else:
                warped = F.grid_sample(gm[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
                volume = warped[:, 0].mul_(gain)
                out[modality] = _scanner(volume, anat.support, scans, "vbm", params, radius[modality],
                                         relative_noise=True)
        return out
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def _quasiraw(anat: DeviceAnatomy, scans: Sequence[Scan], params: dict[str, torch.Tensor], gm: torch.Tensor,
              grid: torch.Tensor, bias: torch.Tensor, radius: int) -> torch.Tensor:  # fmt: skip
    """T1-like ``(0.15 CSF + c_gm GM + c_wm WM)(phi(x)) texture(x)``, bias, scanner, warped brain mask."""
    def per_subject(name: str) -> torch.Tensor:
        return params[name].view(-1, 1, 1, 1)

    csf = (anat.gm - gm).clamp_(min=0.0)  # GM lost to age becomes CSF, as does lost WM: (1 - f) WM
    csf += anat.csf
    csf += per_subject("wm_lost") * anat.wm
    csf.clamp_(max=1.0)
    maps = torch.empty((len(scans), 2, *anat.shape), device=anat.device)
    t1 = maps[:, 0]
    torch.mul(csf, 0.15, out=t1)
    t1 += per_subject("c_gm") * gm
    t1 += per_subject("c_wm") * anat.wm
    maps[:, 1] = anat.brain
    warped = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    texture = _normal(anat.shape, [TEXTURE_STD] * len(scans), [s.seeds["texture"] for s in scans], anat.device)
    for b in range(len(scans)):
        anat.texture(texture[b], out=texture[b])
    volume = warped[:, 0]
    volume *= texture.add_(1.0)
    volume *= bias
    return _scanner(volume, warped[:, 1] > 0.5, scans, "quasiraw", params, radius, relative_noise=False)
