"""The participants table of a synthetic cohort: sites, ages, sexes, TIV, diagnoses and splits.

- ``n_sites`` training sites (codes ``0..S-1``) and ``n_external_sites`` held-out sites (``S..``) whose
  subjects are all ``external_test``; each training site keeps ~20 % of its subjects (at least one) as
  ``internal_test``. Site sizes are imbalanced (Dirichlet weights, at least 4 per training site and 2 per
  external site).
- Each site recruits its own age band, so site and age are confounded: training sites' centres are
  stratified quantiles of Beta(1.3, 2) over the cohort's age range (skewed young like OpenBHB, covering
  it), half-width a fraction of the range drawn from the preset's ``band_half_width`` (``standard``
  8-30 %, ``hard`` 3-8 %); external sites' bands lie inside the training ages.
- Sex: per-site male proportion in [0.3, 0.7] (0.8 for ASD cases); TIV (cm^3) ~ 1500 (male) or 1350
  (female) x LogNormal(0, 0.07).
- Clinical cohorts: at every site half of the subjects are cases (at least one case and one control),
  with a severity ~ U(0.5, 1.5) scaling the diagnosis effects.

Presets (``PRESETS``) set the difficulty: the age bands above, each modality's scanner prior
(``ScannerPrior``, drawn per site by ``simulate.draw_scanner``), a per-site geometric distortion, and the
default numbers of sites. ``standard`` is the model of docs/data.md; ``hard`` is a seed-like multi-site
cohort: 12 training and 4 external sites, narrow site-specific age bands, scanners strong enough that a
linear probe on raw voxels tells the sites apart (BAcc > 0.9), and a scanner-specific distortion.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

from medssl.errors import ConfigError

COHORTS = {  # name -> (case label, age range, id prefix)
    "healthy": ("control", (6.0, 88.0), 1),
    "scz": ("scz", (18.0, 65.0), 2),
    "bd": ("bd", (18.0, 65.0), 3),
    "asd": ("asd", (6.0, 40.0), 4),
}
MIN_TRAIN_SITE, MIN_EXTERNAL_SITE = 4, 2


@dataclasses.dataclass(frozen=True)
class ScannerPrior:
    """Distribution of one modality's site effects (``simulate.draw_scanner`` draws one per site).

    Intensity scale LogNormal(0, ``scale_sd``), offset N(0, ``offset_sd``), Gaussian blur sigma
    U(0, ``blur_max``) voxels, noise std U(``noise``), log bias-field coefficients N(0, ``bias_sd``) on the
    9 linear and quadratic monomials, GM contrast shift N(0, ``gm_contrast_sd``) (quasiraw).
    """

    scale_sd: float
    offset_sd: float
    blur_max: float
    noise: tuple[float, float]
    bias_sd: float
    gm_contrast_sd: float = 0.0


@dataclasses.dataclass(frozen=True)
class Preset:
    """Difficulty of a synthetic cohort: who is scanned where, and how different the scanners are.

    ``band_half_width``: range of a site's age-band half-width, as a fraction of the cohort's age range;
    ``scanners``: prior per modality; ``distortion``: std of each component of a site's smooth
    geometric distortion (a fraction of the smallest side, voxels; 0 = none); ``n_sites`` and
    ``n_external_sites``: defaults when the caller gives none.
    """

    band_half_width: tuple[float, float]
    scanners: dict[str, ScannerPrior]
    distortion: float
    n_sites: int
    n_external_sites: int


PRESETS = {
    "standard": Preset(
        band_half_width=(0.08, 0.3),
        scanners={
            "vbm": ScannerPrior(scale_sd=0.04, offset_sd=0.0, blur_max=0.6, noise=(0.03, 0.1), bias_sd=0.05),
            "quasiraw": ScannerPrior(scale_sd=0.12, offset_sd=0.04, blur_max=1.0, noise=(0.01, 0.05),
                                     bias_sd=0.12, gm_contrast_sd=0.04),
        },
        distortion=0.0, n_sites=6, n_external_sites=2,
    ),
    "hard": Preset(
        band_half_width=(0.03, 0.08),
        scanners={
            "vbm": ScannerPrior(scale_sd=0.08, offset_sd=0.0, blur_max=1.2, noise=(0.05, 0.15), bias_sd=0.15),
            "quasiraw": ScannerPrior(scale_sd=0.2, offset_sd=0.06, blur_max=1.5, noise=(0.02, 0.08),
                                     bias_sd=0.2, gm_contrast_sd=0.06),
        },
        distortion=0.015, n_sites=12, n_external_sites=4,
    ),
}  # fmt: skip


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ConfigError names the accepted ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _site_sizes(n: int, n_sites: int, n_external: int, rng: np.random.Generator) -> np.ndarray:
    minimum = np.array([MIN_TRAIN_SITE] * n_sites + [MIN_EXTERNAL_SITE] * n_external)
    if n < minimum.sum():
        raise ConfigError(
            f"n_subjects={n} is too small for {n_sites} training and {n_external} external sites; "
            f"use at least {minimum.sum()} (4 per training site, 2 per external site)"
        )
    weights = rng.dirichlet(np.full(len(minimum), 4.0))
    return minimum + rng.multinomial(n - minimum.sum(), weights)


def _band_ages(lo: float, hi: float, q: float, size: int, half_width: tuple[float, float],
               rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Uniform ages in a site's band: centre ``lo + q (hi - lo)``, half-width ``U(half_width)`` times the
    range, clipped to ``[lo, hi]`` and at least 4 years wide."""
    centre, half = lo + q * (hi - lo), (hi - lo) * rng.uniform(*half_width)
    a, b = max(lo, centre - half), min(hi, centre + half)
    a, b = (min(a, hi - 4.0), max(b, a + 4.0)) if b - a < 4.0 else (a, b)
    return rng.uniform(a, b, size=size)


def design_cohort(cohort: str, n_subjects: int, n_sites: int, n_external_sites: int,
                  rng: np.random.Generator, preset: str = "standard") -> pd.DataFrame:  # fmt: skip
    """One row per subject: participant_id, study, sex, age, site, siteXacq, diagnosis, tiv, severity, split."""
    half_width = get_preset(preset).band_half_width
    if cohort not in COHORTS:
        raise ConfigError(f"unknown synthetic cohort {cohort!r}; use one of {', '.join(COHORTS)}")
    if n_sites < 1 or n_external_sites < 0:
        raise ConfigError("n_sites must be >= 1 and n_external_sites >= 0")
    case, (lo, hi), prefix = COHORTS[cohort]
    sizes = _site_sizes(n_subjects, n_sites, n_external_sites, rng)
    # training sites' band centres: stratified quantiles of Beta(1.3, 2), so the training sites cover
    # the range; external sites recruit inside the training ages (no extrapolation in age)
    quantiles = (rng.permutation(n_sites) + rng.uniform(size=n_sites)) / n_sites
    rows: list[dict] = []
    for site, size in enumerate(sizes):
        if site < n_sites:
            ages = _band_ages(lo, hi, float(stats.beta.ppf(quantiles[site], 1.3, 2.0)), size, half_width, rng)
        else:
            seen = [r["age"] for r in rows if r["split"] == "train"]
            ages = _band_ages(min(seen), max(seen), rng.uniform(), size, half_width, rng)
            ages = np.clip(ages, min(seen), max(seen))
        if cohort == "healthy":
            diagnosis = np.array(["control"] * size)
        else:
            n_cases = int(np.clip(round(size / 2), 1, size - 1))
            diagnosis = rng.permutation(np.array([case] * n_cases + ["control"] * (size - n_cases)))
        p_male = rng.uniform(0.3, 0.7)
        male = rng.random(size) < np.where(diagnosis == "asd", 0.8, p_male)
        tiv = np.where(male, 1500.0, 1350.0) * np.exp(rng.normal(0, 0.07, size=size))
        severity = np.where(diagnosis == "control", 0.0, rng.uniform(0.5, 1.5, size=size))
        if site < n_sites:
            n_test = max(1, round(0.2 * size))
            split = rng.permutation(["internal_test"] * n_test + ["train"] * (size - n_test))
        else:
            split = np.array(["external_test"] * size)
        for i in range(size):
            rows.append({
                "study": f"synth-{cohort}", "sex": "male" if male[i] else "female",
                "age": round(float(ages[i]), 2), "site": site, "siteXacq": site,
                "diagnosis": diagnosis[i], "tiv": round(float(tiv[i]), 1),
                "severity": round(float(severity[i]), 3), "split": split[i],
            })  # fmt: skip
    table = pd.DataFrame(rows)
    ids = prefix * 10**11 + rng.choice(10**11, size=len(table), replace=False)
    table.insert(0, "participant_id", [str(i) for i in ids])
    return table
