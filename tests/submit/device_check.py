"""GPU check of exported OpenBHB estimators at the real kit sizes (run by hand on a CUDA machine).

Not collected by pytest. Two stages, so that the first runs where medssl cannot be imported (as on
the RAMP server) and the second compares with medssl's own embedder:

    python tests/submit/device_check.py prepare PREP          # here: estimator.py + metadata.pkl per case
    python3 tests/submit/device_check.py server PREP OUT      # there: no medssl/monai importable
    python3 tests/submit/device_check.py medssl PREP OUT      # there: medssl's Embedder on the same rows

The server stage writes real-size masks (4-D CAT12-like TPM with 519,945 voxels > 0.05; quasi-raw
template with 1,827,095 voxels > 0), a float32 memmap of 3,659,572-wide rows, random weights per case,
then times predict on CUDA and records peak GPU memory, CUDA-vs-CPU differences and a float64 pass.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

N_ROWS, WIDTH = 48, 3659572
VBM_SHAPE, VBM_N = (121, 145, 121), 519945
QUASI_SHAPE, QUASI_N = (182, 218, 182), 1827095
CASES = {  # case -> (backbone, kwargs, modality, input shape, resize)
    "densenet121_vbm": ("densenet121_3d", {}, "vbm", (121, 128, 121), "crop_pad"),
    "resnet18_vbm": ("resnet18_3d", {"stem_stride": 2}, "vbm", (121, 128, 121), "crop_pad"),
    "alexnet_vbm": ("alexnet_3d", {}, "vbm", (121, 145, 121), "crop_pad"),
    "densenet121_quasiraw": ("densenet121_3d", {}, "quasiraw", (182, 218, 182), "crop_pad"),
    "resnet18_quasiraw_resample": ("resnet18_3d", {"stem_stride": 2}, "quasiraw", (128, 160, 128), "resample"),
}


class NotOnTheServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name.split(".")[0] in ("medssl", "monai"):
            raise ImportError(f"{name} is not installed on the RAMP server")


def prepare(prep: Path) -> None:
    import pandas as pd

    from medssl.submit.export import build_metadata, render_estimator

    for case, (name, kwargs, modality, shape, resize) in CASES.items():
        num = {"densenet121_3d": 1024, "resnet18_3d": 512, "alexnet_3d": 128}[name]
        card = {"backbone": {"name": name, "in_channels": 1, **kwargs}, "num_features": num,
                "input_shape": list(shape), "modality": modality,
                "cohort_shape": list(VBM_SHAPE if modality == "vbm" else QUASI_SHAPE),
                "preprocessing": {"shape": list(shape), "resize": resize, "normalize": "zscore"}}
        (prep / case).mkdir(parents=True, exist_ok=True)
        (prep / case / "estimator.py").write_text(render_estimator(name, modality, num))
        pd.to_pickle(build_metadata(card, None, 8, Path(f"{case}.pt")), prep / case / "metadata.pkl")


def central_mask(shape: tuple[int, ...], n: int) -> np.ndarray:
    """The ``n`` voxels closest to the centre (a blob, like a brain mask)."""
    grid = np.indices(shape, dtype=np.float32)
    dist = sum(((g - (s - 1) / 2) / s) ** 2 for g, s in zip(grid, shape))
    mask = np.zeros(int(np.prod(shape)), bool)
    mask[np.argsort(dist, axis=None, kind="stable")[:n]] = True
    return mask.reshape(shape)


def write_kit(root: Path) -> tuple[dict[str, str], np.ndarray]:
    import nibabel

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    vbm, quasi = central_mask(VBM_SHAPE, VBM_N), central_mask(QUASI_SHAPE, QUASI_N)
    tpm = np.where(vbm, rng.uniform(0.06, 1, VBM_SHAPE), rng.uniform(0, 0.05, VBM_SHAPE)).astype(np.float32)
    masks = {"VBM_MASK": str(root / "tpm.nii.gz"), "QUASIRAW_MASK": str(root / "brain.nii.gz")}
    nibabel.save(nibabel.Nifti1Image(tpm[..., None], np.eye(4)), masks["VBM_MASK"])  # 4-D, as the kit's file
    nibabel.save(nibabel.Nifti1Image(quasi.astype(np.int16) * 100, np.eye(4)), masks["QUASIRAW_MASK"])
    X = np.lib.format.open_memmap(root / "train.npy", mode="w+", dtype=np.float32, shape=(N_ROWS, WIDTH))
    for i in range(N_ROWS):
        X[i] = rng.standard_normal(WIDTH, dtype=np.float32) + 0.02 * i
    X.flush()
    return masks, np.load(root / "train.npy", mmap_mode="r")


def load(folder: Path):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(f"sub_{folder.name}", folder / "estimator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server(prep: Path, out: Path) -> None:
    import pandas as pd
    import torch

    sys.meta_path.insert(0, NotOnTheServer())
    masks, X = write_kit(Path("/tmp/kit"))
    os.environ.update(masks)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for case in CASES:
        folder = prep / case
        module = load(folder)
        meta = pd.read_pickle(folder / "metadata.pkl")
        torch.manual_seed(0)
        net = module.build_backbone(**meta["backbone_kwargs"])
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        torch.save({"model": net.state_dict()}, folder / "weights.pth")
        pipe = module.get_estimator().fit(None, None)
        step = pipe[-1]
        step.indices = range(min(8, N_ROWS))
        pipe.predict(X)  # warm-up (cuDNN autotuning, page cache)
        torch.cuda.reset_peak_memory_stats()
        step.indices = None
        start = time.perf_counter()
        features = pipe.predict(X)
        seconds = time.perf_counter() - start
        row = {"s_per_subject": seconds / N_ROWS, "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30,
               "shape": list(features.shape), "finite": bool(np.isfinite(features).all()),
               "feature_std": float(features.std(0).mean())}
        np.save(out / f"{case}.npy", features[:4])
        step.indices = [0, 1]
        step.device_, step.model_ = torch.device("cpu"), step.model_.cpu()
        cpu = pipe.predict(X)
        row["max_abs_cuda_vs_cpu"] = float(np.abs(cpu - features[:2]).max())
        row["max_abs_feature"] = float(np.abs(features[:2]).max())
        step.device_, step.model_ = torch.device("cuda"), step.model_.cuda()
        step.indices = None
        if case == "densenet121_vbm":
            quick = np.random.default_rng(0).random((4, WIDTH))  # float64, as the kit's quick-test
            row["float64_ok"] = bool(np.isfinite(pipe.predict(quick)).all())
        results[case] = row
        print(case, json.dumps(row), flush=True)
    assert not [m for m in sys.modules if m.split(".")[0] in ("medssl", "monai")]
    (out / "server.json").write_text(json.dumps(results, indent=2))


def medssl_stage(prep: Path, out: Path) -> None:
    """medssl's Embedder (preprocess=True, CUDA) on the first 4 rows vs the server stage's features."""
    import torch

    from medssl.data.kit import load_mask
    from medssl.eval.features import Embedder
    from medssl.models import save_encoder
    from medssl.registry import BACKBONES

    masks = {"vbm": load_mask("vbm", Path("/tmp/kit/tpm.nii.gz")),
             "quasiraw": load_mask("quasiraw", Path("/tmp/kit/brain.nii.gz"))}
    X = np.load("/tmp/kit/train.npy", mmap_mode="r")
    results = {}
    for case, (name, kwargs, modality, shape, resize) in CASES.items():
        state = torch.load(prep / case / "weights.pth", weights_only=True)["model"]
        net = BACKBONES.build(name, in_channels=1, **kwargs)
        net.load_state_dict(state)
        card = {"backbone": {"name": name, "in_channels": 1, **kwargs}, "input_shape": list(shape),
                "modality": modality, "preprocessing": {"shape": list(shape), "resize": resize,
                                                        "normalize": "zscore"}}
        save_encoder(Path("/tmp/enc") / case / "encoder.pt", net, card)
        start = 0 if modality == "vbm" else VBM_N
        rows = np.asarray(X[:4, start : start + int(masks[modality].sum())])
        vols = np.zeros((len(rows), 1, *masks[modality].shape), np.float32)
        vols[:, 0, masks[modality]] = rows
        embedder = Embedder(encoder_path=str(Path("/tmp/enc") / case), preprocess=True, device="cuda").fit()
        exported = np.load(out / f"{case}.npy")[: len(rows)]
        tf32 = embedder.transform(vols)  # medssl's default: cuDNN may use TF32
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            fp32 = embedder.transform(vols)
        results[case] = {"max_abs_diff_fp32": float(np.abs(fp32 - exported).max()),
                         "max_abs_diff_tf32": float(np.abs(tf32 - exported).max()),
                         "max_abs": float(np.abs(fp32).max())}
        print(case, json.dumps(results[case]), flush=True)
    (out / "medssl.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    stage = sys.argv[1]
    if stage == "prepare":
        prepare(Path(sys.argv[2]))
    elif stage == "server":
        server(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        medssl_stage(Path(sys.argv[2]), Path(sys.argv[3]))
