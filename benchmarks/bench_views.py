"""Time the two view backends: batched torch ``ViewAugmenter`` vs MONAI per-sample ``Compose``.

    python benchmarks/bench_views.py                      # CPU, batch 8 at 64^3 -> results/views_cpu.json
    python benchmarks/bench_views.py --device cuda        # the torch path on the GPU -> views_cuda.json
    python benchmarks/bench_views.py --device cuda --tf32 --out OUT.json   # matmuls in TF32 (not the default)

For each preset (``yaware`` and ``full`` at their published p = 0.5, plus every op at p = 1) it reports
milliseconds per volume for one view: the torch path on a ``(B, 1, S, S, S)`` batch, and (on the CPU)
the MONAI path called once per sample, as a DataLoader worker would. Timings are medians over
``--reps`` repetitions after one warm-up (``torch.utils.benchmark``, device synchronised); the host's
load average is recorded because a shared VM can slow 2-thread runs several-fold.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

import medssl  # noqa: F401  (fills the registries)
from medssl.transforms import OpSpec, ViewAugmenter, monai_transform, preset_ops
from medssl.utils.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def median_s(fn: Any, reps: int, threads: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls after one warm-up call."""
    fn()
    return Timer("fn()", globals={"fn": fn}, num_threads=threads).timeit(reps).median


def cases() -> dict[str, list[OpSpec]]:
    """Presets at their defaults, then each op of ``full`` alone at p = 1."""
    out = {"yaware (p=0.5)": preset_ops("yaware"), "full (p=0.5)": preset_ops("full"),
           "full (p=1)": preset_ops("full", p=1.0)}
    for spec in preset_ops("full", p=1.0):
        out[f"{spec.name} (p=1)"] = [spec]
    return out


def bench(
    device: torch.device, batch: int, size: int, reps: int, threads: int, monai: bool
) -> dict[str, Any]:
    x = torch.randn(batch, 1, size, size, size, device=device)
    rows = {}
    for name, specs in cases().items():
        augmenter = ViewAugmenter(specs)
        row = {"torch_batched_ms_per_volume": 1e3 * median_s(lambda: augmenter(x), reps, threads) / batch}
        if monai:
            transform = monai_transform(specs).set_random_state(0)
            samples = [x[i].clone() for i in range(batch)]
            per_batch = median_s(lambda: [transform({"image": s}) for s in samples], reps, threads)
            row["monai_per_sample_ms_per_volume"] = 1e3 * per_batch / batch
            row["monai_over_torch"] = (
                row["monai_per_sample_ms_per_volume"] / row["torch_batched_ms_per_volume"]
            )
        rows[name] = {k: round(v, 2) for k, v in row.items()}
        print(f"{name:22s} " + "  ".join(f"{k}={v:.2f}" for k, v in rows[name].items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="cubic volume side")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default results/views_<device>.json)")
    ap.add_argument("--tf32", action="store_true",
                    help="let CUDA matmuls use TF32 (the per-axis resampling of blur and crop + resize)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = torch.device(args.device)
    rows = bench(device, args.batch, args.size, args.reps, args.threads, monai=device.type == "cpu")
    result = {
        "what": "ms per volume for one view; torch = batched ViewAugmenter, monai = per-sample Compose",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "torch_threads": args.threads,
        "cuda_matmul_tf32": args.tf32,
        "batch": args.batch,
        "shape": [1, args.size, args.size, args.size],
        "reps": args.reps,
        "load_average_1min": os.getloadavg()[0],
        "versions": {"torch": torch.__version__, "monai": __import__("monai").__version__},
        "cases": rows,
    }
    write_json(args.out or RESULTS / f"views_{device.type}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
