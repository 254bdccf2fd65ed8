"""Frozen-encoder features: a batched extraction loop and an sklearn transformer (``Embedder``).

Preprocessing contract (what the OpenBHB exporter must reproduce to 1e-5): the encoder sees float32
volumes ``(B, 1, D, H, W)`` that were centre-cropped/zero-padded (or resampled: card
``preprocessing.resize``) to the card's ``preprocessing.shape``, then z-scored per image over the whole
volume, ``(x - mean) / std`` (``preprocessing.normalize``). ``CohortDataset`` does this before
``extract_features``; ``Embedder.transform`` takes volumes already preprocessed so, or raw volumes with
``preprocess=True`` (it then calls ``medssl.data.dataset.preprocess_image``, the dataset's own function).
Nothing random happens anywhere: eval mode, no grad, no augmentation, full fp32 (no TF32) on CUDA."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medssl.data.dataset import preprocess_image
from medssl.data.device_cache import DeviceCohort
from medssl.errors import ConfigError, DataError
from medssl.eval.frozen import assert_frozen
from medssl.models import load_encoder
from medssl.registry import VIEWS
from medssl.utils.device import resolve_device
from medssl.utils.progress import progress_bar


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Disable TF32 in cuDNN convolutions and CUDA matmuls for the block (previous flags restored).

    PyTorch enables TF32 for convolutions by default; on an H100 it moved resnet18_3d features by up to
    9e-4 from the CPU values (1.5e-6 with TF32 off), above the exporter's 1e-5 parity budget.
    """
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


@torch.no_grad()
def _embed_batches(encoder: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> np.ndarray:
    with full_fp32():
        out = [encoder(x.to(device, torch.float32)).float().cpu().numpy() for x in batches]
    return np.concatenate(out) if out else np.zeros((0, int(getattr(encoder, "num_features", 0))), np.float32)


def _meta_rows(batch: dict[str, Any]) -> pd.DataFrame:
    cols = {}
    for key, value in batch.items():
        if key == "image":
            continue
        cols[key] = value.numpy() if isinstance(value, torch.Tensor) else list(value)
    return pd.DataFrame(cols)


def extract_features(
    encoder: nn.Module,
    data: Dataset | DataLoader | DeviceCohort,
    device: str | torch.device | None = "auto",
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Embed every item of a dataset of dicts (``CohortDataset``) with a frozen encoder.

    The encoder runs in eval mode under ``no_grad`` (its previous mode is restored); its state is
    digested before and after (``FrozenWeightsError`` if anything changed). Order is preserved.

    Args:
        encoder: ``(B, 1, D, H, W) -> (B, F)``.
        data: a Dataset yielding dicts with ``"image"`` (1, D, H, W) and metadata, a DataLoader of them,
            or a ``DeviceCohort`` (``data.cache: device``: volumes already on the device, read as slices,
            no loader; they are the dataset's volumes rounded to bfloat16, upcast to float32 here).

    Returns:
        ``X`` float32 (N, F) and ``meta``: one row per item with every non-image key (age, site, ...).
    """
    device = resolve_device(device)
    bar = functools.partial(progress_bar, enabled=progress, desc="embedding", unit="batch")
    metas: list[pd.DataFrame] = []
    if isinstance(data, DeviceCohort):
        images: Iterable[torch.Tensor] = (data.images[i:i + batch_size] for i in bar(range(0, len(data), batch_size)))
        metas.append(data.meta)
    else:
        loader = data if isinstance(data, DataLoader) else DataLoader(
            data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
        )

        def loaded() -> Iterable[torch.Tensor]:
            for batch in bar(loader):
                if not isinstance(batch, dict) or "image" not in batch:
                    raise DataError("extract_features needs a dataset of dicts with an 'image' key (CohortDataset)")
                metas.append(_meta_rows(batch))
                yield batch["image"]

        images = loaded()
    was_training = encoder.training
    encoder.eval().to(device)
    try:
        with assert_frozen(encoder):
            X = _embed_batches(encoder, images, device)
    finally:
        encoder.train(was_training)
    meta = pd.concat(metas, ignore_index=True) if metas else pd.DataFrame()
    return X, meta


class Embedder(TransformerMixin, BaseEstimator):
    """sklearn transformer: volumes ``(n, 1, D, H, W)`` or ``(n, D, H, W)`` -> features ``(n, F)`` float32.

    ``fit`` loads the encoder (``medssl.models.load_encoder``) and ignores its data; ``transform`` embeds in
    batches (eval mode, no grad) and checks the weights are unchanged. Clone-safe: ``__init__`` only stores.

    Args:
        encoder_path: a run folder or ``encoder.pt`` with its ``encoder.json`` card.
        batch_size: volumes per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        preprocess: apply the card's crop/pad + per-image z-score (raw volumes); False means the volumes
            are already preprocessed (what ``CohortDataset`` yields) and must have the card's shape.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        *,
        encoder_path: str | None = None,
        batch_size: int = 8,
        device: str = "auto",
        preprocess: bool = False,
        progress: bool = False,
    ) -> None:
        self.encoder_path = encoder_path
        self.batch_size = batch_size
        self.device = device
        self.preprocess = preprocess
        self.progress = progress

    def fit(self, X: Any = None, y: Any = None) -> "Embedder":
        """Load the encoder weights and card; ``X`` and ``y`` are ignored (the encoder is pretrained)."""
        if self.encoder_path is None:
            raise ConfigError("Embedder needs encoder_path= (a run folder or encoder.pt)")
        if int(self.batch_size) < 1:
            raise ConfigError(f"Embedder batch_size must be >= 1, got {self.batch_size}")
        self.encoder_, self.card_ = load_encoder(self.encoder_path)
        self.encoder_.eval()
        self.input_shape_ = tuple(self.card_.get("preprocessing", {}).get("shape") or self.card_["input_shape"])
        self.n_features_out_ = int(self.card_.get("num_features", getattr(self.encoder_, "num_features", -1)))
        return self

    def _volumes(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 4:
            X = X[:, None]
        if X.ndim != 5 or X.shape[1] != 1:
            raise DataError(f"Embedder expects volumes (n, 1, D, H, W) or (n, D, H, W), got shape {X.shape}")
        if self.preprocess:
            prep = self.card_.get("preprocessing", {})
            resize, normalize = prep.get("resize", "crop_pad"), prep.get("normalize", "zscore")
            return np.stack(
                [preprocess_image(v, self.input_shape_, resize, normalize, f"volume {i}") for i, v in enumerate(X)]
            )
        if tuple(X.shape[2:]) != self.input_shape_:
            raise DataError(
                f"volumes of shape {tuple(X.shape[2:])} but the encoder card expects {self.input_shape_}; "
                "pass preprocess=True to crop/pad and z-score them as the card says"
            )
        return X

    def transform(self, X: Any) -> np.ndarray:
        """Embed volumes; returns float32 (n, F)."""
        check_is_fitted(self, "encoder_")
        n = len(X)
        device = resolve_device(self.device)
        self.encoder_.eval().to(device)
        bs = int(self.batch_size)
        batches = (
            torch.from_numpy(self._volumes(X[i : i + bs]))
            for i in progress_bar(range(0, n, bs), enabled=self.progress, desc="embedding")
        )
        with assert_frozen(self.encoder_):
            return _embed_batches(self.encoder_, batches, device)


def view_pair_features(
    encoder: nn.Module,
    dataset: Dataset,
    preset: str = "yaware",
    device: str | torch.device | None = "auto",
    batch_size: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of two random views (``VIEWS.build(preset)``, seeded) of every item: the positive pairs
    of the alignment metric. Same frozen-encoder guarantees as ``extract_features``.

    Returns:
        ``(Z1, Z2)``, float32 (N, F) each; row i holds the two views of item i.
    """
    device = resolve_device(device)
    augment = VIEWS.build(preset).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    was_training = encoder.training
    encoder.eval().to(device)
    z1, z2 = [], []
    try:
        with assert_frozen(encoder), torch.no_grad(), full_fp32():
            for batch in loader:
                x = batch["image"].to(device, torch.float32)
                z1.append(encoder(augment(x, generator)).float().cpu().numpy())
                z2.append(encoder(augment(x, generator)).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(z1), np.concatenate(z2)
