"""A tiny synthetic SCZ cohort (40 subjects, 3 training sites + 1 external, 16^3) and a tiny encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch
from finetune_helpers import SHAPE, make_encoder, write_pretrain_manifest


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny 3D convolutions run faster on one thread (and are not slowed by a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scz_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data.synthetic import make_synthetic_cohort

    root = make_synthetic_cohort(tmp_path_factory.mktemp("cohort") / "scz", "scz", n_subjects=40, n_sites=3,
                                 n_external_sites=1, shape=tuple(SHAPE), seed=0, layout="nifti")
    return root / "manifest_vbm.csv"


@pytest.fixture(scope="session")
def clean_encoder(scz_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encoder whose pretraining cohort shares no participant or study with the SCZ cohort."""
    pre = write_pretrain_manifest(scz_manifest, "pretrain_clean.csv", same_ids=False, study="openbhb")
    return make_encoder(tmp_path_factory.mktemp("enc") / "yaware", str(pre), seed=1)
