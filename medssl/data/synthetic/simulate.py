"""The generative model of one synthetic scan (see docs/data.md for the equations in prose).

Anatomy: template tissue maps (``anatomy.py``) are changed by age (three regional GM-loss processes with
their own age curves, an inverted-U WM curve, lost tissue becomes CSF) and diagnosis, then warped by
``phi(x) = x + u(x)`` where ``u = u_rand + u_vent``: a smooth random field (Gaussian-blurred white noise)
plus a radial ventricular expansion ``u_vent = -a(age) w(x) (x - c)``, ``w = exp(-|x - c|^2 / 2r^2)``.
- ``quasiraw``: T1-like contrast ``c_csf CSF + c_gm GM + c_wm WM`` of the warped maps, skull-stripped
  (head size removed, as by the 9-dof affine registration of OpenBHB's quasi-raw images).
- ``vbm``: modulated GM in template space:
  ``GM_eff(x + 0.2 u_rand + u_vent) * s^3 / det(I + grad(0.3 u_rand))`` (residual misregistration, the
  ventricular expansion, Jacobian modulation), ``s^3 = TIV / 1400 cm^3``.
Scanner (site) effects, per modality: multiplicative bias field (quadratic polynomial), Gaussian blur,
intensity scale and offset, additive noise, each drawn per site and jittered per subject.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from medssl.data.synthetic.anatomy import Anatomy

# Diagnosis-specific effects: fractional GM change per region and extra ventricular expansion.
DIAGNOSIS_EFFECTS: dict[str, dict[str, float]] = {
    "scz": {"frontal": -0.09, "temporal": -0.09, "insula": -0.09, "hippocampus": -0.07, "ventricles": 0.1},
    "bd": {"insula": -0.07, "cingulate": -0.08, "hippocampus": -0.05, "ventricles": 0.05},
    "asd": {"frontal": 0.05, "temporal": -0.05, "cingulate": -0.06, "ventricles": 0.02},
}
# VBM: fraction of the random warp left by registration, and of it that the Jacobian modulation keeps
# as individual regional volume (det(I + grad(0.3 u)) has ~7.5 % std in GM); the ventricular expansion is
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


def age_curves(age: float) -> dict[str, float]:
    """GM log-loss of each age process: pruning ``0.3 (1 - exp(-(age - 6)_+ / 8))`` (saturates by ~25),
    adult ``0.005 (age - 6)``, late ``0.45 ((age - 40)_+ / 48)^2``."""
    return {
        "pruning": 0.3 * (1.0 - float(np.exp(-max(age - 6.0, 0.0) / 8.0))),
        "adult": 0.005 * (age - 6.0),
        "late": 0.45 * (max(age - 40.0, 0.0) / 48.0) ** 2,
    }


def wm_factor(age: float) -> float:
    """Inverted-U WM curve peaking at 45 years: ``1 - 0.1 ((age - 45) / 40)^2``."""
    return 1.0 - 0.1 * ((age - 45.0) / 40.0) ** 2


def ventricle_expansion(age: float) -> float:
    """a(age): strength of the radial ventricular expansion, linear after 20, quadratic after 40."""
    return 0.05 + 0.003 * max(age - 20.0, 0.0) + 0.4 * (max(age - 40.0, 0.0) / 48.0) ** 2


@dataclasses.dataclass(frozen=True)
class ScannerEffects:
    """One site's acquisition signature for one modality (see ``draw_scanner``)."""

    scale: float
    offset: float
    blur: float  # Gaussian sigma, voxels
    noise: float  # additive noise std
    bias: tuple[float, ...]  # 9 coefficients of the log bias field on (x, y, z, x^2, ..., xy, xz, yz)
    gm_contrast: float = 0.0  # quasiraw only: shift of the GM intensity


def draw_scanner(rng: np.random.Generator, modality: str) -> ScannerEffects:
    """Site effects; quasi-raw intensities vary much more across scanners than VBM maps."""
    strong = modality == "quasiraw"
    return ScannerEffects(
        scale=float(np.exp(rng.normal(0, 0.12 if strong else 0.04))),
        offset=float(rng.normal(0, 0.04)) if strong else 0.0,
        blur=float(rng.uniform(0.0, 1.0 if strong else 0.6)),
        noise=float(rng.uniform(0.01, 0.05) if strong else rng.uniform(0.03, 0.1)),
        bias=tuple(rng.normal(0, 0.12 if strong else 0.05, size=9)),
        gm_contrast=float(rng.normal(0, 0.04)) if strong else 0.0,
    )


def _jitter(effects: ScannerEffects, rng: np.random.Generator) -> ScannerEffects:
    """Per-scan variation of a site's effects (5 % scale, 20 % blur and noise)."""
    return dataclasses.replace(
        effects,
        scale=effects.scale * float(np.exp(rng.normal(0, 0.03))),
        blur=effects.blur * float(rng.uniform(0.8, 1.2)),
        noise=effects.noise * float(rng.uniform(0.8, 1.2)),
    )


def apply_scanner(volume: np.ndarray, mask: np.ndarray, coords: np.ndarray, fx: ScannerEffects,
                  rng: np.random.Generator, relative_noise: bool = False) -> np.ndarray:  # fmt: skip
    """``mask * (scale * blur(volume * exp(bias(x))) + offset + noise)``; with ``relative_noise`` the
    noise is multiplied by the blurred signal (VBM maps: no noise where there is no GM)."""
    x, y, z = coords
    terms = np.stack([x, y, z, x * x - 0.3, y * y - 0.3, z * z - 0.3, x * y, x * z, y * z])
    bias = np.exp(np.tensordot(np.asarray(fx.bias, dtype=np.float32), terms, axes=1))
    out = volume * bias
    if fx.blur > 0.05:
        out = ndimage.gaussian_filter(out, fx.blur)
    noise = rng.normal(0, fx.noise, size=volume.shape) * (out if relative_noise else 1.0)
    out = fx.scale * (out + noise) + fx.offset
    return (out * mask).astype(np.float32)


def random_field(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float,
                 smoothness: float = 0.12) -> np.ndarray:  # fmt: skip
    """Smooth displacement ``(3, D, H, W)``: white noise blurred with sigma ``smoothness * max(shape)``
    voxels, rescaled to standard deviation ``amplitude`` (voxels) per component."""
    fields = []
    for _ in range(3):
        field = ndimage.gaussian_filter(rng.normal(size=shape), smoothness * max(shape), mode="reflect")
        fields.append(field * (amplitude / max(field.std(), 1e-12)))
    return np.stack(fields).astype(np.float32)


def jacobian_det(u: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` of a displacement ``(3, D, H, W)`` (central differences)."""
    g = [np.gradient(u[a]) for a in range(3)]  # g[a][b] = d u_a / d x_b
    m = [[g[a][b] + (1.0 if a == b else 0.0) for b in range(3)] for a in range(3)]
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))  # fmt: skip


def _warp(volume: np.ndarray, grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(volume, grid + u, order=1, mode="constant", cval=0.0)


def tissue_maps(anat: Anatomy, age: float, diagnosis: str, severity: float) -> dict[str, np.ndarray]:
    """Template-space GM/WM/CSF after age and diagnosis effects; lost tissue becomes CSF."""
    curves = age_curves(age)
    loss = sum(curves[name] * (base + sum(w * anat.region(r) for r, w in weights.items()))
               for name, (base, weights) in AGE_PATTERNS.items())  # fmt: skip
    gm = anat.gm * np.exp(-loss)
    for region, effect in DIAGNOSIS_EFFECTS.get(diagnosis, {}).items():
        if region != "ventricles":
            gm = gm * (1.0 + severity * effect * anat.region(region))
    wm = anat.wm * wm_factor(age)
    csf = anat.csf + np.clip(anat.gm - gm, 0, None) + np.clip(anat.wm - wm, 0, None)
    return {"gm": gm, "wm": wm, "csf": np.clip(csf, 0, 1)}


def simulate_scan(
    anat: Anatomy,
    age: float,
    tiv: float,
    diagnosis: str,
    severity: float,
    scanners: dict[str, ScannerEffects],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One subject's ``{"vbm": (D, H, W), "quasiraw": (D, H, W)}`` float32 volumes."""
    shape = anat.shape
    grid = np.indices(shape, dtype=np.float32)
    u_rand = random_field(shape, rng, amplitude=0.04 * min(shape))
    a = ventricle_expansion(age) + severity * DIAGNOSIS_EFFECTS.get(diagnosis, {}).get("ventricles", 0.0)
    a = max(a + rng.normal(0, 0.03), 0.0)
    rel = grid - anat.ventricle_center[:, None, None, None].astype(np.float32)
    weight = np.exp(-(rel**2).sum(0) / (2 * anat.ventricle_radius**2))
    u_vent = -a * weight * rel
    u = u_rand + u_vent
    maps = tissue_maps(anat, age, diagnosis, severity)

    warped = {k: _warp(v, grid, u) for k, v in maps.items()}
    brain = _warp(anat.brain, grid, u) > 0.5
    c_gm = 0.45 + 0.001 * (age - 40.0) + scanners["quasiraw"].gm_contrast
    c_wm = 0.8 - 0.0015 * max(age - 40.0, 0.0)
    texture = 1.0 + ndimage.gaussian_filter(rng.normal(0, 0.08, size=shape), 0.7)
    t1 = (0.15 * warped["csf"] + c_gm * warped["gm"] + c_wm * warped["wm"]) * texture
    quasiraw = apply_scanner(t1, brain, anat.coords, _jitter(scanners["quasiraw"], rng), rng)

    modulation = (tiv / 1400.0) / np.clip(jacobian_det(VBM_VOLUME * u_rand), 0.3, 3.0)
    gm_vbm = _warp(maps["gm"], grid, VBM_RESIDUAL * u_rand + u_vent) * modulation
    support = anat.brain > 0.1
    vbm = apply_scanner(gm_vbm, support, anat.coords, _jitter(scanners["vbm"], rng), rng, relative_noise=True)
    return {"vbm": np.clip(vbm, 0, None), "quasiraw": np.clip(quasiraw, 0, None)}
