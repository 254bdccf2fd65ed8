"""CPU benchmark (issue 9, items 3 CPU side and 5): what one data worker feeds, the tiny config's step,
and ``medssl demo`` wall time + peak RSS. Writes ``benchmarks/results/cpu.json``.

- ``feed``: volumes/s one worker (1 thread) feeds from memory-mapped ``.npy`` files of one float32
  volume each (made in a temp folder, so warm in the page cache): the raw numpy path (mmap read + copy
  + z-score) and medssl's real path (manifest -> ``open_cohort`` -> ``CohortDataset[i]``), once with the
  stored shape and once with a crop/pad to 128^3.
- ``tiny_step``: one training step of ``configs/debug/tiny_cpu.yaml``'s model, views and loss at its
  batch and shape, fp32 on 2 threads (same step as ``bench_steps.medssl_step``, without autocast).
- ``demo``: ``python -m medssl.cli demo`` in a subprocess; wall seconds and peak RSS.

Usage: ``python benchmarks/cpu_bench.py [--out benchmarks/results] [--overwrite] [--no-demo] [--smoke]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import Bench, environment, time_calls  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _per_second(fn: Any, n: int) -> float:
    """Calls per second of ``fn(i)`` over ``i = 0..n-1`` after one warm-up call."""
    fn(0)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def feed(shape: tuple[int, int, int], n_files: int = 12) -> dict[str, Any]:
    """Volumes/s one single-threaded worker feeds from memory-mapped ``.npy`` volumes of ``shape``."""
    return one_thread(lambda: _feed(shape, n_files))


def _feed(shape: tuple[int, int, int], n_files: int) -> dict[str, Any]:
    from medssl.data import open_cohort
    from medssl.data.dataset import CohortDataset

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = ["participant_id,path,site,age,sex,split"]
        for i in range(n_files):
            vol = (rng.standard_normal((1, *shape), dtype=np.float32) * 0.2 + 0.5).clip(0, None)
            np.save(Path(tmp) / f"s{i}.npy", vol)
            rows.append(f"sub-{i},s{i}.npy,site{i % 3},{20 + i},{'male' if i % 2 else 'female'},train")
        manifest = Path(tmp) / "manifest.csv"
        manifest.write_text("\n".join(rows) + "\n")

        def raw(i: int) -> np.ndarray:
            x = np.array(np.load(Path(tmp) / f"s{i % n_files}.npy", mmap_mode="r"))
            mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
            return (x - mean) / std  # float32: Python floats do not promote

        out: dict[str, Any] = {"shape": list(shape), "files": n_files, "threads": 1,
                               "raw_npy_vol_per_s": round(_per_second(raw, n_files), 1)}
        cohort = open_cohort(manifest)
        plain = CohortDataset(cohort)
        out["cohort_dataset_vol_per_s"] = round(_per_second(lambda i: plain[i % n_files], n_files), 1)
        cropped = CohortDataset(cohort, shape=(128, 128, 128))
        out["cohort_dataset_crop_pad_128_vol_per_s"] = round(
            _per_second(lambda i: cropped[i % n_files], n_files), 1)
    return out


def tiny_step(config: Path, steps: int) -> dict[str, Any]:
    """Step time of the tiny config's method at its batch size and synthetic shape (fp32, CPU)."""
    from bench_steps import fake_meta  # first: registers the methods that the config names

    from medssl.config import PretrainConfig, load_config
    from medssl.engine.optim import build_optimizer
    from medssl.pipelines.pretrain import method_from_config
    from medssl.registry import VIEWS

    cfg = load_config(config, [], PretrainConfig)
    method = method_from_config(cfg)
    views_spec = {k: v for k, v in cfg.views.items() if k not in ("name", "backend")}
    aug = VIEWS.build(cfg.views["name"], **views_spec)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay)
    b, shape = cfg.train.batch_size, tuple(cfg.data.synthetic_shape)
    x, meta = torch.randn(b, 1, *shape), fake_meta(b, torch.device("cpu"))

    def step() -> None:
        out = method({"image": x, **meta}, [aug(x), aug(x)])
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()

    t = time_calls(step, torch.device("cpu"), 1, steps, max_s=30.0)
    return {"config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
            "backbone": cfg.model["name"], "batch": b, "shape": list(shape), "threads": torch.get_num_threads(),
            "step_s": round(t["median_s"], 4), "vol_per_s": round(2 * b / t["median_s"], 1), "timing": t}


def one_thread(fn: Any) -> Any:
    """``fn()`` with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def demo(timeout_s: float) -> dict[str, Any]:
    """Run ``medssl demo`` in a subprocess: wall time, CPU time and peak RSS.

    The RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest resident set of any child this
    process has waited for, so run it before anything else spawns a bigger child.
    """
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "medssl.cli", "demo", "--out", str(Path(tmp) / "demo")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env={**os.environ, "MEDSSL_PROGRESS": "0"},
                              capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in (proc.stdout + proc.stderr).splitlines()[-3:])
        raise RuntimeError(f"medssl demo exited {proc.returncode} after {wall:.0f} s: {tail[-400:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"command": "medssl demo", "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "cpu_count": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cpu.json")
    p.add_argument("--smoke", action="store_true", help="tiny volumes, 1 timed step, no demo")
    p.add_argument("--no-demo", action="store_true", help="skip the medssl demo run")
    p.add_argument("--demo-timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    target = args.out / "cpu.json"
    if target.exists() and not args.overwrite:
        raise SystemExit(f"cpu_bench: {target} exists; pass --overwrite to replace it")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    bench = Bench(args.out, "cpu.json", budget_s=3600.0)
    bench.set("settings", {"smoke": args.smoke, "command": " ".join(sys.argv)})
    bench.run("environment", lambda: environment(torch.device("cpu")))
    if not (args.smoke or args.no_demo):
        bench.run("demo", lambda: demo(args.demo_timeout))
    shape = (32, 32, 32) if args.smoke else (121, 145, 121)
    bench.run("feed", lambda: feed(shape, n_files=4 if args.smoke else 12))
    tiny = REPO / "configs" / "debug" / "tiny_cpu.yaml"
    bench.run("tiny_step", lambda: tiny_step(tiny, 1 if args.smoke else 10))
    if not args.smoke:  # one thread: steadier than two on a shared VM (see shared/reference/performance.md)
        bench.run("tiny_step_1thread", lambda: one_thread(lambda: tiny_step(tiny, 10)))
    bench.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
