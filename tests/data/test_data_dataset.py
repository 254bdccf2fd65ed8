"""CohortDataset: dict items, crop/pad and resampling, z-score, MONAI transforms, the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medssl.data import CohortDataset, open_cohort, resize_volume
from medssl.errors import DataError


def test_items_follow_the_contract(hf_root: Path) -> None:
    cohort = open_cohort(hf_root)
    ds = CohortDataset(cohort)
    item = ds[7]
    row = cohort.table.iloc[7]
    assert item["image"].dtype == torch.float32 and tuple(item["image"].shape) == (1, 16, 20, 16)
    assert item["age"] == np.float32(row["age"]) and item["age"].dtype == np.float32
    assert item["sex"] == {"female": 0, "male": 1}[row["sex"]]
    assert item["site"] == row["site_code"] and item["participant_id"] == row["participant_id"]
    assert item["split"] == row["split"] and item["diagnosis"] == "control" and item["index"] == 7
    # per-image z-score over the whole volume, against an independent float64 computation
    raw = cohort.read(7).astype(np.float64)
    np.testing.assert_allclose(item["image"].numpy(), (raw - raw.mean()) / raw.std(), atol=1e-5)
    stored = CohortDataset(cohort, normalize=None)[7]["image"].numpy()
    np.testing.assert_array_equal(stored, cohort.read(7))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, 16, 20, 16) and batch["age"].dtype == torch.float32
    assert batch["sex"].dtype == torch.int64 and len(batch["participant_id"]) == 4


def test_crop_pad_is_centred() -> None:
    volume = np.arange(6 * 8 * 5, dtype=np.float32).reshape(1, 6, 8, 5)
    out = resize_volume(volume, (4, 10, 5))  # crop D by 1+1, pad H by 1+1, keep W
    assert out.shape == (1, 4, 10, 5)
    np.testing.assert_array_equal(out[0, :, 1:9, :], volume[0, 1:5, :, :])
    assert (out[0, :, 0] == 0).all() and (out[0, :, 9] == 0).all()


def test_resample_and_target_shape(hf_root: Path) -> None:
    cohort = open_cohort(hf_root)
    ds = CohortDataset(cohort, shape=(8, 10, 8), resize="resample")
    image = ds[0]["image"]
    assert image.shape == (1, 8, 10, 8) and ds.output_shape == (8, 10, 8)
    assert abs(float(image.mean())) < 1e-5 and abs(float(image.std()) - 1) < 1e-3
    # a constant volume stays constant under trilinear resampling
    constant = np.full((1, 16, 20, 16), 3.0, np.float32)
    np.testing.assert_allclose(resize_volume(constant, (8, 10, 8), "resample"), 3.0, rtol=1e-5)
    with pytest.raises(ValueError, match="resize must be"):
        CohortDataset(cohort, resize="zoom")  # type: ignore[arg-type]


def test_monai_dict_transform_is_applied_after_normalisation(hf_root: Path) -> None:
    from monai.transforms import Flipd

    cohort = open_cohort(hf_root)
    plain, flipped = CohortDataset(cohort)[3], CohortDataset(cohort, transform=Flipd(keys="image", spatial_axis=0))[3]
    np.testing.assert_array_equal(np.asarray(flipped["image"]), plain["image"].numpy()[:, ::-1])
    assert flipped["age"] == plain["age"]


def test_cache_is_used_and_keyed_by_settings(hf_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cohort = open_cohort(hf_root)
    ds = CohortDataset(cohort, shape=(12, 12, 12), cache_dir=tmp_path)
    first = ds[2]["image"].numpy()
    assert len(list(tmp_path.glob("*.npy"))) == 1
    monkeypatch.setattr(cohort, "read", lambda i: (_ for _ in ()).throw(AssertionError("cache missed")))
    np.testing.assert_array_equal(ds[2]["image"].numpy(), first)
    other = CohortDataset(cohort, shape=(12, 12, 12), normalize=None, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="cache missed"):
        other[2]


def test_constant_image_cannot_be_zscored(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 4, 4)))
    (tmp_path / "m.csv").write_text("participant_id,path\na,a.npy\n")
    with pytest.raises(DataError, match="row 0 \\(a\\): image is constant"):
        CohortDataset(open_cohort(tmp_path / "m.csv"))[0]
