"""Device cache and evaluation speed (issue 17, items 3 and 4). Writes ``benchmarks/results/eval_<device>.json``.

On a synthetic cohort of ``--subjects`` scans at ``--shape`` (written once into ``--data``, reused):

- ``cache``: ``DeviceCohort.build`` of the training split (seconds, GB) and the training feed, batches
  of ``--batch`` in the sampler's order: the DataLoader path (``SeededItems`` + collate + move, no
  workers) against ``cached_batches`` (gather on the device). Batches/s over one epoch.
- ``embed``: ``extract_features`` of every scan with a fresh ``--backbone`` in eval mode, fp32: from the
  ``CohortDataset`` (loader) and from a ``DeviceCohort`` of all scans.
- ``probes``: the challenge probes (``score_fold`` on the cohort's splits) with ``n_jobs=1`` and with
  the default (``probe_jobs()`` threads); ``identical`` says the metrics are equal.
- ``evaluate``: ``medssl.pipelines.evaluate.evaluate`` end to end (embedding, probes, alignment, report),
  the per-arm cost of a study, with the default ``n_jobs``.

Usage: ``python benchmarks/bench_eval.py [--device cpu] [--subjects 1000] [--shape 48 56 48]
[--backbone resnet18_3d] [--width W] [--out benchmarks/results] [--smoke]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import Bench, environment  # noqa: E402


def _timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def cohort_root(data: Path, subjects: int, shape: tuple[int, int, int]) -> Path:
    """The benchmark cohort (12 training sites, 3 external), generated once."""
    from medssl.data import make_synthetic_cohort

    root = data / f"bench_{subjects}_{'x'.join(map(str, shape))}"
    if not (root / "synthetic.json").is_file():
        make_synthetic_cohort(root, n_subjects=subjects, n_sites=12, n_external_sites=3, shape=shape, seed=0,
                              layout="hf", overwrite=True)
    return root


def cache_item(root: Path, device: torch.device, batch: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from medssl.data import CohortDataset, open_cohort
    from medssl.data.device_cache import DeviceCohort
    from medssl.engine.feed import cached_batches
    from medssl.engine.sampling import ResumableSampler, SeededItems
    from medssl.engine.train import to_device

    dataset = CohortDataset(open_cohort(root).select(["train"]))
    cohort, build_s = _timed(lambda: DeviceCohort.build(dataset, device, progress=False))
    sampler = ResumableSampler(len(dataset), batch, seed=0)
    n = sampler.batches_per_epoch()

    def loader_epoch() -> None:
        for b in DataLoader(SeededItems(dataset), batch_size=batch, sampler=sampler, drop_last=True):
            to_device(b, device, False)["image"].sum().item()

    def cached_epoch() -> None:
        for b in cached_batches(cohort, sampler, lambda b: b, n):
            b["image"].sum().item()

    _, loader_s = _timed(loader_epoch)
    _, cached_s = _timed(cached_epoch)
    return {"scans": len(dataset), "build_s": round(build_s, 2), "gb": round(cohort.images.nbytes / 1e9, 3),
            "batches": n, "batch": batch, "loader_batches_per_s": round(n / loader_s, 1),
            "cached_batches_per_s": round(n / cached_s, 1), "speedup": round(loader_s / cached_s, 1)}


def make_encoder(backbone: str, width: int | None, shape: tuple[int, int, int], out: Path) -> Path:
    from medssl.models import save_encoder
    from medssl.registry import BACKBONES

    kwargs = {"width": width} if width else {}
    torch.manual_seed(0)
    net = BACKBONES.build(backbone, **kwargs)
    card = {"backbone": {"name": backbone, **kwargs}, "input_shape": list(shape), "modality": "vbm",
            "preprocessing": {"shape": list(shape), "resize": "crop_pad", "normalize": "zscore"}}
    save_encoder(out / "encoder.pt", net, card)
    return out


def embed_item(root: Path, encoder_dir: Path, device: torch.device, batch: int) -> dict[str, Any]:
    from medssl.data import CohortDataset, open_cohort
    from medssl.data.device_cache import DeviceCohort
    from medssl.eval.features import extract_features
    from medssl.models import load_encoder

    encoder, _ = load_encoder(encoder_dir)
    dataset = CohortDataset(open_cohort(root))
    (X, _), loader_s = _timed(lambda: extract_features(encoder, dataset, device, batch, progress=False))
    cohort, build_s = _timed(lambda: DeviceCohort.build(dataset, device, progress=False))
    (X_cached, _), cached_s = _timed(lambda: extract_features(encoder, cohort, device, batch, progress=False))
    return {"scans": len(dataset), "features": X.shape[1], "batch": batch, "loader_s": round(loader_s, 2),
            "cache_build_s": round(build_s, 2), "cached_s": round(cached_s, 2),
            "max_rel_diff_bf16": float(np.abs(X - X_cached).max() / np.abs(X).max())}


def probes_item(root: Path, encoder_dir: Path, device: torch.device) -> dict[str, Any]:
    from medssl.data import CohortDataset, open_cohort
    from medssl.eval.cv import make_folds
    from medssl.eval.features import extract_features
    from medssl.eval.probes import probe_jobs
    from medssl.eval.protocol import score_fold
    from medssl.models import load_encoder

    encoder, _ = load_encoder(encoder_dir)
    cohort = open_cohort(root)
    X, meta = extract_features(encoder, CohortDataset(cohort), device, 32, progress=False)
    (fold,) = make_folds(cohort.table, "fixed")
    (serial, _), serial_s = _timed(lambda: score_fold(X, meta, fold, n_jobs=1))
    (parallel, _), parallel_s = _timed(lambda: score_fold(X, meta, fold))
    return {"n_train": serial["n_train"], "features": X.shape[1], "serial_s": round(serial_s, 2),
            "parallel_s": round(parallel_s, 2), "threads": probe_jobs(), "identical": serial == parallel,
            "speedup": round(serial_s / parallel_s, 2), "bacc_site": serial["bacc_site"],
            "mae_internal": serial["mae_internal"]}


def evaluate_item(root: Path, encoder_dir: Path, device: torch.device, batch: int) -> dict[str, Any]:
    from medssl.pipelines.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        metrics, seconds = _timed(lambda: evaluate(encoder_dir, root, Path(tmp) / "eval", batch_size=batch,
                                                   device=str(device), progress=False))
    return {"evaluate_s": round(seconds, 2), "n_train": metrics["n_train"], "n_internal": metrics["n_internal"],
            "n_external": metrics["n_external"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--subjects", type=int, default=1000)
    p.add_argument("--shape", type=int, nargs=3, default=[48, 56, 48])
    p.add_argument("--backbone", default="resnet18_3d")
    p.add_argument("--width", type=int, default=None, help="tiny_cnn3d width (8 x width features)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "medssl_bench_eval")
    p.add_argument("--out", type=Path, default=None, help="folder for eval_<device>.json (default: print only)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the test suite's run)")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.subjects, args.shape, args.backbone, args.width = "cpu", 80, [16, 16, 16], "tiny_cnn3d", 2
    device = torch.device(args.device)
    shape = tuple(args.shape)
    bench = Bench(args.out, f"eval_{device.type}.json", budget_s=1800)
    bench.set("settings", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    bench.run("environment", lambda: environment(device))
    root = cohort_root(args.data, args.subjects, shape)
    with tempfile.TemporaryDirectory() as tmp:
        encoder_dir = make_encoder(args.backbone, args.width, shape, Path(tmp))
        bench.run("cache", lambda: cache_item(root, device, args.batch))
        bench.run("embed", lambda: embed_item(root, encoder_dir, device, args.batch))
        bench.run("probes", lambda: probes_item(root, encoder_dir, device))
        bench.run("evaluate", lambda: evaluate_item(root, encoder_dir, device, args.batch))
    bench.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
