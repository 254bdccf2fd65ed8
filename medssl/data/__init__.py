"""medssl.data: cohorts (OpenBHB layouts, manifests), the synthetic cohort, datasets and guards.

The contract is in ARCHITECTURE.md ("Data contract"). Typical use::

    cohort = open_cohort("synthetic")                 # or an OpenBHB root / kit / manifest CSV
    train = CohortDataset(cohort.select("train"), shape=(32, 40, 32))
"""

from __future__ import annotations

from medssl.data.cohort import MODALITIES, SPLITS, Cohort
from medssl.data.dataset import CohortDataset, preprocess_image, resize_volume, zscore
from medssl.data.kit import mask_volume, unmask
from medssl.data.kit_writer import write_kit_layout
from medssl.data.leakage import check_leakage, check_split_leakage
from medssl.data.manifest import read_manifest, write_manifest
from medssl.data.sources import detect_layout, open_cohort
from medssl.data.summary import missing_labels, plot_cohort, require_labels, summarize_cohort, validate_cohort
from medssl.data.synthetic import default_cache_dir, ensure_synthetic, make_synthetic_cohort

__all__ = [
    "MODALITIES",
    "SPLITS",
    "Cohort",
    "CohortDataset",
    "check_leakage",
    "check_split_leakage",
    "default_cache_dir",
    "detect_layout",
    "ensure_synthetic",
    "make_synthetic_cohort",
    "mask_volume",
    "missing_labels",
    "open_cohort",
    "plot_cohort",
    "preprocess_image",
    "read_manifest",
    "require_labels",
    "resize_volume",
    "summarize_cohort",
    "unmask",
    "validate_cohort",
    "write_kit_layout",
    "write_manifest",
    "zscore",
]
