"""Runtime of the exported OpenBHB estimator: kit rows -> un-masked volumes -> preprocessing -> features.

Template: ``medssl.submit.export`` inlines the code below the ``# %% exported`` line into estimator.py,
after one architecture block that defines ``ARCHITECTURE`` and ``build_backbone(**kwargs)``; the import
of the tiny block below only makes this file importable on its own. The exported text must pass the
RAMP sanitizer, so it never names the builtin that reads files (``np.load``, ``pandas.read_pickle`` and
``torch.load`` do it) and avoids that word everywhere, comments included. It must run on the kit's
stack (torch 1.8-2.x, Python >= 3.8): features newer than torch 1.8 are detected, never assumed, and
no syntax newer than Python 3.8 is used (tests parse it with ``feature_version=(3, 8)`` and run it
against torch 1.8's and 1.12's API).
"""

from __future__ import annotations

import inspect
import os

import nibabel
import numpy as np
import pandas
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.pipeline import make_pipeline

from medssl.submit.templates.arch_tiny_cnn3d import ARCHITECTURE, build_backbone

# %% exported
KIT_ROW_WIDTH = 3659572
KIT_BLOCKS = {"vbm": (0, 519945), "quasiraw": (519945, 2347040)}
MASK_ENV = {"vbm": ("VBM_MASK", 0.05), "quasiraw": ("QUASIRAW_MASK", 0.0)}
MAX_FEATURES = 10000


def read_mask(modality):
    """Boolean mask (D, H, W) of ``modality``: the NIfTI file named by its env var, thresholded.

    As the kit's preprocessing.py: float64 data (``get_fdata``), first volume of a 4D file, then
    > 0.05 for the CAT12 GM TPM (vbm) and > 0 for the quasi-raw brain template.
    """
    env, threshold = MASK_ENV[modality]
    path = os.environ.get(env, "")
    if not os.path.isfile(path):
        raise RuntimeError(f"env {env}={path!r} must name the kit's {modality} mask file (kit root)")
    data = np.asarray(nibabel.load(path).get_fdata())
    return (data[..., 0] if data.ndim == 4 else data) > threshold


def block_ranges(masks, width):
    """Column ranges [start, stop) of the vbm and quasi-raw blocks of a kit row of ``width`` columns.

    The kit concatenates the masked vbm voxels, then the masked quasi-raw voxels (then other
    modalities), so the ranges follow from the mask sizes; with the real masks they are ``KIT_BLOCKS``.
    """
    n_vbm, n_quasiraw = int(masks["vbm"].sum()), int(masks["quasiraw"].sum())
    ranges = {"vbm": (0, n_vbm), "quasiraw": (n_vbm, n_vbm + n_quasiraw)}
    if width == KIT_ROW_WIDTH and ranges != KIT_BLOCKS:
        raise RuntimeError(f"masks give blocks {ranges} but the kit's rows have {KIT_BLOCKS}: wrong mask files")
    if width < n_vbm + n_quasiraw:
        raise RuntimeError(f"rows have {width} columns, fewer than the {n_vbm + n_quasiraw} masked voxels")
    return ranges


def unmask(rows, mask):
    """Inverse of nilearn ``apply_mask`` (C-order boolean indexing): (B, n_voxels) -> (B, D, H, W) float32."""
    volumes = np.zeros((len(rows),) + mask.shape, dtype=np.float32)
    volumes[:, mask] = rows
    return volumes


def crop_pad(x, shape):
    """Centre crop, then centre zero-pad, a batch (B, C, *S) to spatial ``shape``.

    As MONAI ``ResizeWithPadOrCrop``: the crop starts at s // 2 - t // 2 (the centre voxel s // 2 stays
    the centre), the padding before is (t - s) // 2.
    """
    index = [slice(None), slice(None)]
    for s, t in zip(x.shape[2:], shape):
        start = s // 2 - t // 2 if s > t else 0
        index.append(slice(start, start + min(s, t)))
    x = x[tuple(index)]
    pad = []
    for s, t in reversed(list(zip(x.shape[2:], shape))):
        extra = max(t - s, 0)
        pad += [extra // 2, extra - extra // 2]
    return F.pad(x, pad)


def gaussian_kernel(sigma):
    """scipy ``gaussian_filter``'s kernel: sampled Gaussian, radius int(4 sigma + 0.5), sum 1, float32."""
    radius = int(4.0 * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def resample(x, shape):
    """Resize a batch (B, C, *S) to spatial ``shape`` exactly as medssl's dataset does.

    When any axis shrinks, every axis with factor f = s / t > 1 is first smoothed by a Gaussian of
    sigma (f - 1) / 2 (scipy ``gaussian_filter``, edge-replicating border, separable); then trilinear
    interpolation, align_corners=False (MONAI ``Resize(mode="trilinear")``).
    """
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    if any(t < s for s, t in zip(x.shape[2:], shape)):
        factors = torch.tensor(x.shape[2:], dtype=torch.float32) / torch.tensor(shape, dtype=torch.float32)
        for axis, factor in enumerate(factors.tolist()):
            if factor <= 1:
                continue
            kernel = gaussian_kernel((factor - 1) / 2).to(x)
            size = [1, 1, 1]
            size[axis] = len(kernel)
            weight = kernel.reshape(1, 1, *size).repeat(x.shape[1], 1, 1, 1, 1)
            pad = [0] * 6
            pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = (len(kernel) - 1) // 2
            x = F.conv3d(F.pad(x, pad, mode="replicate"), weight, groups=x.shape[1])
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=False)


def zscore(x):
    """Per-image z-score over the whole volume: (x - mean) / std, population std, float64 statistics.

    medssl refuses a constant image (std < 1e-8); on the server it becomes zeros (std clamped to 1e-8).
    """
    dims = tuple(range(1, x.dim()))
    x64 = x.double()
    centred = x64 - x64.mean(dim=dims, keepdim=True)
    std = centred.pow(2).mean(dim=dims, keepdim=True).sqrt().clamp(min=1e-8)  # torch 1.8: no std(correction=)
    return (centred / std).float()


def load_weights(path):
    """``torch.load`` on the CPU, restricted to tensors (``weights_only``) where this torch has it (>= 1.13)."""
    restrict = "weights_only" in inspect.signature(torch.load).parameters
    return torch.load(path, map_location="cpu", **({"weights_only": True} if restrict else {}))


def no_grad():
    """``torch.inference_mode()`` where this torch has it (>= 1.9), else ``torch.no_grad()``."""
    return getattr(torch, "inference_mode", torch.no_grad)()


def preprocess(volumes, preprocessing):
    """Volumes (B, 1, D, H, W) -> what the encoder saw in pretraining (card's ``preprocessing``)."""
    if preprocessing.get("shape") is not None:
        resize = resample if preprocessing["resize"] == "resample" else crop_pad
        volumes = resize(volumes, [int(s) for s in preprocessing["shape"]])
    if preprocessing.get("normalize") == "zscore":
        volumes = zscore(volumes)
    return volumes


class OpenBHBEmbedder(BaseEstimator):
    """Frozen medssl encoder as the kit's feature extractor.

    ``fit(None, None)`` only loads weights.pth and metadata.pkl from ``folder`` (default: this file's
    folder). ``predict(X)`` embeds rows ``X[indices]`` (all rows when ``indices`` is None) of the kit
    matrix (n, 3659572) in mini-batches: slice the modality block, un-mask, preprocess, encode.
    Returns float32 (n_rows, num_features), num_features <= 10000.
    """

    def __init__(self, batch_size=None, indices=None, device=None, folder=None):
        self.batch_size = batch_size
        self.indices = indices
        self.device = device
        self.folder = folder

    def fit(self, X=None, y=None):
        folder = self.folder or os.path.dirname(os.path.abspath(__file__))
        meta = pandas.read_pickle(os.path.join(folder, "metadata.pkl"))
        if meta["architecture"] != ARCHITECTURE:
            raise RuntimeError(f"metadata.pkl is for {meta['architecture']!r}, this file defines {ARCHITECTURE!r}")
        weights = load_weights(os.path.join(folder, "weights.pth"))
        model = build_backbone(**meta["backbone_kwargs"])
        model.load_state_dict(weights["model"], strict=True)
        self.device_ = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model_ = model.to(self.device_).eval()
        self.meta_ = meta
        return self

    def predict(self, X):
        rows = np.arange(X.shape[0]) if self.indices is None else np.asarray(self.indices, dtype=np.int64)
        modality = self.meta_["modality"]
        masks = {m: read_mask(m) for m in MASK_ENV}
        start, stop = block_ranges(masks, X.shape[1])[modality]
        batch_size = int(self.batch_size or self.meta_["batch_size"])
        features = [np.zeros((0, int(self.meta_["num_features"])), dtype=np.float32)]
        for i in range(0, len(rows), batch_size):
            block = np.asarray(X[rows[i : i + batch_size], start:stop], dtype=np.float32)
            features.append(self.embed_volumes(unmask(block, masks[modality])))
        features = np.concatenate(features)
        assert features.shape == (len(rows), self.meta_["num_features"]), features.shape
        assert features.shape[1] <= MAX_FEATURES, features.shape
        assert np.isfinite(features).all(), "non-finite features"
        return features

    def embed_volumes(self, volumes):
        """Volumes (B, D, H, W) float32 as stored -> features (B, F) float32.

        cuDNN runs in full float32 (no TF32) with deterministic algorithms: TF32 convolutions move
        the features by ~1e-4, which would break the match with medssl's CPU features (1e-5).
        """
        cudnn = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
        with cudnn, no_grad():
            x = torch.from_numpy(volumes)[:, None].to(self.device_)
            x = preprocess(x, self.meta_["preprocessing"])
            return self.model_(x).float().cpu().numpy()


def get_estimator():
    """The kit's entry point: a one-step, iterable sklearn Pipeline around ``OpenBHBEmbedder``."""
    return make_pipeline(OpenBHBEmbedder())
