"""The embedded synthetic cohort: MNI152 anatomy from nilearn + age, diagnosis and site effects."""

from __future__ import annotations

from medssl.data.synthetic.anatomy import Anatomy, load_anatomy
from medssl.data.synthetic.generate import default_cache_dir, ensure_synthetic, make_synthetic_cohort

__all__ = ["Anatomy", "default_cache_dir", "ensure_synthetic", "load_anatomy", "make_synthetic_cohort"]
