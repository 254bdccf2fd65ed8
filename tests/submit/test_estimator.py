"""The exported estimator's runtime contract: masks, blocks, indices, batching, cap, equality with medssl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest
import torch
from monai.transforms import ResizeWithPadOrCrop
from nilearn.masking import unmask as nilearn_unmask

from medssl.data import preprocess_image
from medssl.eval.features import Embedder
from medssl.submit.check import mask_env, read_kit
from medssl.submit.export import load_estimator_module


class RecordingRows:
    """Wraps a kit matrix and records how many rows each ``X[rows, cols]`` access reads."""

    def __init__(self, X: np.ndarray) -> None:
        self.X, self.reads = X, []
        self.shape = X.shape

    def __getitem__(self, key: Any) -> np.ndarray:
        out = self.X[key]
        self.reads.append(out.shape[0])
        return out


@pytest.fixture()
def fitted(tiny_submission: Path, kit_root: Path) -> Any:
    module = load_estimator_module(tiny_submission)
    with mask_env(read_kit(kit_root).masks):
        yield module, module.get_estimator().fit(None, None)


def test_pipeline_is_iterable_and_fit_only_loads(fitted: Any) -> None:
    module, pipe = fitted
    (step,) = list(pipe)
    assert isinstance(step, module.OpenBHBEmbedder) and step.indices is None
    assert step.meta_["architecture"] == "tiny_cnn3d" and not step.model_.training


def test_indices_contract(fitted: Any, kit_root: Path) -> None:
    _, pipe = fitted
    X = read_kit(kit_root).X_train
    full = pipe.predict(X)
    assert full.shape == (len(X), 32) and full.dtype == np.float32
    pipe[-1].indices = [7, 2, 2, 29]
    np.testing.assert_allclose(pipe.predict(X), full[[7, 2, 2, 29]], atol=1e-6)
    pipe[-1].indices = range(3)
    assert pipe.predict(X).shape == (3, 32)
    pipe[-1].indices = None
    assert pipe.predict(X).shape == (len(X), 32)


def test_mini_batches_never_read_the_whole_matrix(fitted: Any, kit_root: Path) -> None:
    _, pipe = fitted
    X = RecordingRows(read_kit(kit_root).X_train)
    pipe[-1].batch_size = 4
    pipe.predict(X)
    assert X.reads == [4] * 7 + [2]


def test_float64_quick_test_rows_give_finite_float_features(fitted: Any, kit_root: Path) -> None:
    _, pipe = fitted
    X = np.random.default_rng(0).random((3, read_kit(kit_root).X_train.shape[1]))  # float64, as quick-test
    features = pipe.predict(X)
    assert features.shape == (3, 32) and np.isfinite(features).all()


def test_feature_cap_is_asserted(fitted: Any, kit_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, pipe = fitted
    step = pipe[-1]
    monkeypatch.setitem(step.meta_, "num_features", 10001)
    monkeypatch.setattr(step, "embed_volumes", lambda v: np.zeros((len(v), 10001), np.float32))
    with pytest.raises(AssertionError):
        pipe.predict(read_kit(kit_root).X_train)


def test_missing_mask_env_is_an_error(tiny_submission: Path, kit_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_estimator_module(tiny_submission)
    pipe = module.get_estimator().fit(None, None)
    monkeypatch.delenv("VBM_MASK", raising=False)
    with pytest.raises(RuntimeError, match="VBM_MASK"):
        pipe.predict(read_kit(kit_root).X_train)


def test_blocks_follow_the_masks_and_equal_the_kit_constants(tiny_submission: Path) -> None:
    module = load_estimator_module(tiny_submission)
    masks = {"vbm": np.ones(519945, bool), "quasiraw": np.ones(1827095, bool)}
    assert module.block_ranges(masks, 3659572) == {"vbm": (0, 519945), "quasiraw": (519945, 2347040)}
    with pytest.raises(RuntimeError, match="wrong mask"):
        module.block_ranges({"vbm": np.ones(10, bool), "quasiraw": np.ones(5, bool)}, 3659572)
    with pytest.raises(RuntimeError, match="fewer"):
        module.block_ranges({"vbm": np.ones(10, bool), "quasiraw": np.ones(5, bool)}, 12)


def test_unmask_equals_nilearn(tiny_submission: Path, kit_root: Path) -> None:
    module = load_estimator_module(tiny_submission)
    kit = read_kit(kit_root)
    with mask_env(kit.masks):
        mask = module.read_mask("vbm")
    rows = np.asarray(kit.X_train[:3, : mask.sum()])
    mask_img = nibabel.Nifti1Image(mask.astype(np.int8), np.eye(4))
    expected = np.moveaxis(nilearn_unmask(rows, mask_img).get_fdata(), -1, 0)
    np.testing.assert_array_equal(module.unmask(rows, mask), expected)


@pytest.mark.parametrize("shape", [(5, 8, 7), (9, 4, 6), (6, 6, 6), (3, 2, 3)])
def test_crop_pad_and_zscore_equal_monai_and_numpy(tiny_submission: Path, shape: tuple[int, ...]) -> None:
    module = load_estimator_module(tiny_submission)
    x = torch.randn(2, 1, 6, 7, 6)
    got = module.crop_pad(x, shape)
    for i in range(2):
        np.testing.assert_array_equal(got[i].numpy(), np.asarray(ResizeWithPadOrCrop(shape)(x[i])))
    v = got.numpy().astype(np.float64)
    axes = (1, 2, 3, 4)
    expected = (v - v.mean(axes, keepdims=True)) / v.std(axes, keepdims=True)
    np.testing.assert_allclose(module.zscore(got).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 9, 7), (3, 14, 5), (8, 10, 6)])
def test_resample_and_zscore_equal_medssl_dataset(tiny_submission: Path, shape: tuple[int, ...]) -> None:
    """Against ``medssl.data`` (MONAI ``Resize`` trilinear with anti-aliasing): shrink, grow, mixed axes."""
    module = load_estimator_module(tiny_submission)
    x = torch.rand(2, 1, 8, 10, 6) * 100
    got = module.zscore(module.resample(x, shape)).numpy()
    for i in range(2):
        expected = preprocess_image(x[i].numpy(), shape, resize="resample", normalize="zscore")
        np.testing.assert_allclose(got[i], expected, atol=2e-6)


def test_features_equal_medssl_embedder(fitted: Any, kit_root: Path, tiny_run: Path) -> None:
    """Same subjects, two paths: the estimator on kit rows vs medssl's Embedder on nilearn-unmasked volumes."""
    _, pipe = fitted
    kit = read_kit(kit_root)
    mask_img = nibabel.load(kit.masks["VBM_MASK"])
    binary = nibabel.Nifti1Image((mask_img.get_fdata() > 0.05).astype(np.int8), np.eye(4))
    n_vbm = int((mask_img.get_fdata() > 0.05).sum())
    volumes = np.moveaxis(nilearn_unmask(np.asarray(kit.X_test[:, :n_vbm]), binary).get_fdata(), -1, 0)
    expected = Embedder(encoder_path=str(tiny_run), preprocess=True).fit().transform(volumes.astype(np.float32))
    got = pipe.predict(kit.X_test)
    assert np.abs(expected).max() > 1e-3  # not trivially equal
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
