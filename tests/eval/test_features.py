"""Feature extraction: frozen-weights check, Embedder as an sklearn transformer, dataset parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from torch import nn

from medssl.errors import DataError
from medssl.eval.features import Embedder, extract_features
from medssl.eval.frozen import FrozenWeightsError, assert_frozen, state_digest
from medssl.models import save_encoder
from medssl.registry import BACKBONES

SHAPE = (16, 16, 16)


class DictDataset(torch.utils.data.Dataset):
    """A stand-in for CohortDataset: dicts with an image and metadata."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.from_numpy(self.images[i]), "age": np.float32(20 + i), "site": i % 3,
                "participant_id": f"p{i}", "split": "train", "index": i}


def _encoder(tmp_path: Path) -> tuple[nn.Module, Path]:
    net = BACKBONES.build("tiny_cnn3d", in_channels=1, width=4)
    with torch.no_grad():  # non-trivial BN statistics, so eval and train modes differ
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "run" / "encoder.pt"
    card = {"backbone": {"name": "tiny_cnn3d", "in_channels": 1, "width": 4}, "input_shape": list(SHAPE),
            "modality": "vbm", "preprocessing": {"shape": list(SHAPE), "resize": "crop_pad", "normalize": "zscore"}}
    save_encoder(path, net, card)
    return net, path


def _volumes(n: int, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, *shape)).astype(np.float32)
    return (x - x.mean(axis=(1, 2, 3, 4), keepdims=True)) / x.std(axis=(1, 2, 3, 4), keepdims=True)


def test_frozen_check_fires_when_a_batchnorm_buffer_changes() -> None:
    net = BACKBONES.build("tiny_cnn3d", width=4)
    digest = state_digest(net)
    with pytest.raises(FrozenWeightsError, match="running_mean"):
        with assert_frozen(net):
            net.train()(torch.randn(2, 1, *SHAPE))  # train-mode forward updates running stats
    assert state_digest(net) != digest
    with assert_frozen(net):
        net.eval()(torch.randn(2, 1, *SHAPE))
    with pytest.raises(FrozenWeightsError, match="num_batches_tracked"):
        with assert_frozen(net):
            net.features[1].num_batches_tracked += 1  # a buffer that is not float


def test_extract_features_is_eval_mode_ordered_and_restores_mode(tmp_path: Path) -> None:
    net, _ = _encoder(tmp_path)
    net.train()
    x = _volumes(5)
    X, meta = extract_features(net, DictDataset(x), device="cpu", batch_size=2, progress=False)
    assert net.training  # mode restored
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    assert meta.participant_id.tolist() == [f"p{i}" for i in range(5)]
    np.testing.assert_allclose(meta.age, 20 + np.arange(5))


def test_extract_features_raises_if_forward_mutates_a_buffer(tmp_path: Path) -> None:
    net, _ = _encoder(tmp_path)
    net.register_forward_hook(lambda m, i, o: m.features[1].running_var.mul_(1.0001))
    with pytest.raises(FrozenWeightsError):
        extract_features(net, DictDataset(_volumes(2)), device="cpu", progress=False)


def test_embedder_clone_pipeline_and_parity_with_dataset_path(tmp_path: Path) -> None:
    net, path = _encoder(tmp_path)
    emb = Embedder(encoder_path=str(path), batch_size=3, device="cpu")
    assert clone(emb).get_params() == emb.get_params()
    x = _volumes(7)
    Z = emb.fit(None).transform(x)
    X, _ = extract_features(net, DictDataset(x), device="cpu", batch_size=4, progress=False)
    assert Z.shape == (7, 32) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, X, atol=1e-5)
    np.testing.assert_allclose(emb.transform(x[:, 0]), Z, atol=1e-6)  # (n, D, H, W) accepted
    ages = np.arange(7.0)
    pipe = make_pipeline(Embedder(encoder_path=str(path), device="cpu"), Ridge()).fit(x, ages)
    np.testing.assert_allclose(pipe.predict(x), Ridge().fit(Z, ages).predict(Z), atol=1e-3)
    assert clone(pipe).steps[0][1].encoder_path == str(path)


def test_embedder_preprocess_applies_the_card_and_refuses_wrong_shapes(tmp_path: Path) -> None:
    _, path = _encoder(tmp_path)
    raw = 3.0 + 2.0 * np.random.default_rng(1).normal(size=(3, 1, 18, 14, 16)).astype(np.float32)
    emb = Embedder(encoder_path=str(path), device="cpu").fit()
    with pytest.raises(DataError, match="preprocess=True"):
        emb.transform(raw)
    # centre crop 18 -> 16 (drop 1 each side), zero-pad 14 -> 16 (1 each side), then z-score
    manual = np.zeros((3, 1, *SHAPE), np.float32)
    manual[:, :, :, 1:15, :] = raw[:, :, 1:17, :, :]
    manual = (manual - manual.mean(axis=(1, 2, 3, 4), keepdims=True)) / manual.std(axis=(1, 2, 3, 4), keepdims=True)
    np.testing.assert_allclose(emb.set_params(preprocess=True).transform(raw), emb.set_params(preprocess=False)
                               .transform(manual), atol=1e-5)


def test_features_are_computed_without_tf32_and_flags_are_restored(tmp_path: Path) -> None:
    net, _ = _encoder(tmp_path)
    seen = []
    net.register_forward_hook(lambda m, i, o: seen.append((torch.backends.cudnn.allow_tf32,
                                                           torch.backends.cuda.matmul.allow_tf32)))
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        extract_features(net, DictDataset(_volumes(2)), device="cpu", progress=False)
        assert seen == [(False, False)] and torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_features_from_a_device_cohort_equal_the_loaders_on_bf16_rounded_volumes(tmp_path: Path) -> None:
    """``data.cache: device``: the cached volumes are embedded in slices, with the loader's metadata."""
    import pandas as pd

    from medssl.data.device_cache import DeviceCohort

    net, _ = _encoder(tmp_path)
    images = _volumes(11)
    cohort = DeviceCohort.build(DictDataset(images), torch.device("cpu"), batch_size=4, progress=False)
    rounded = torch.from_numpy(images).to(torch.bfloat16).float().numpy()
    X_cached, meta_cached = extract_features(net, cohort, "cpu", batch_size=5, progress=False)
    X_loader, meta_loader = extract_features(net, DictDataset(rounded), "cpu", batch_size=5, progress=False)
    np.testing.assert_array_equal(X_cached, X_loader)
    pd.testing.assert_frame_equal(meta_cached, meta_loader)
    X_full, _ = extract_features(net, DictDataset(images), "cpu", batch_size=5, progress=False)
    assert not np.array_equal(X_full, X_cached)  # the rounding is visible: the check can fail
    np.testing.assert_allclose(X_full, X_cached, rtol=0.05, atol=0.05 * np.abs(X_full).max())
