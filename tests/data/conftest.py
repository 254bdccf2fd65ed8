"""Tiny synthetic cohorts shared by the data tests (16x20x16 voxels, 40 subjects)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.data import make_synthetic_cohort

SHAPE = (16, 20, 16)
TINY = dict(n_subjects=40, n_sites=3, n_external_sites=1, shape=SHAPE, seed=0)


@pytest.fixture(scope="session")
def hf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy cohort in the OpenBHB HuggingFace layout."""
    return make_synthetic_cohort(tmp_path_factory.mktemp("hf") / "cohort", **TINY)


@pytest.fixture(scope="session")
def nifti_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same cohort (same seed) written as NIfTI + manifests."""
    return make_synthetic_cohort(tmp_path_factory.mktemp("nifti") / "cohort", layout="nifti", **TINY)
