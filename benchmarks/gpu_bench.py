"""GPU benchmark of medssl pretraining (issue 9, items 1-4 and 6), one budgeted run, < 6 minutes.

Items, in order (each item's result or error is recorded; the summary is printed as one JSON line and
written to ``OUT/gpu.json`` after every item):

- ``cpu_views``: per-sample MONAI y-aware views on the host's CPU workers (the published kind of
  pipeline), volumes/s with all workers busy; measured first, before CUDA starts, so workers can fork.
- ``feed``: volumes/s one CPU worker feeds (memory-mapped ``.npy`` read + z-score, ``cpu_bench.feed``).
- ``gpu_views``: batched on-device augmentation, volumes/s per registered view preset.
- ``losses``: forward + backward of the yaware / exp / fairkl losses at N = 64 and 1024 subjects, d = 128.
- ``gather``: one-rank process group, ``all_gather`` of (z, y, site) (launch cost only; see ``bench_scaling``).
- ``profile/<backbone>``: ``torch.profiler`` over two of medssl's steps: the operators (with input
  shapes) that take the most device time, and the share of each.
- ``variants/<backbone>``: medssl's step under each eager :class:`bench_steps.Variant` (memory format x
  stem); the fastest is used by the items after it.
- ``train/<backbone>``: medssl's step (fastest variant) vs the plain fp32 step, volumes/s (both views
  counted), peak memory, counted FLOPs and MFU; OOM falls back to activation checkpointing, then to
  smaller batches.
- ``gradcache/<first backbone>``: large contrastive batches (256, 512, ... subjects x 2 views) through the
  gradient cache (chunks of ``--subjects``, views made per chunk): volumes/s and peak memory.
- ``engine/<first backbone>``: the real ``train_loop`` fed by DataLoader workers (``bench_engine``), with
  and without the side-stream prefetch of the next batch, against the ``train`` item's step.
- ``compile/<first backbone>`` (``--compile-all``: every backbone): ``torch.compile`` of the backbone,
  only when time is left.
- ``memory/<backbone>``: largest batch with bf16 + activation checkpointing and no gradient cache
  (time-capped; ``--skip memory`` leaves it out).

Usage: ``python benchmarks/gpu_bench.py --out OUT`` (``--smoke``: the same code on CPU at tiny sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_common import (  # noqa: E402
    Bench, bf16_peak, environment, free_memory, is_oom, largest_fitting, sync, time_calls,
)
from bench_steps import Variant  # noqa: E402

FULL_SHAPE = (121, 145, 121)


@dataclass
class Settings:
    device: torch.device
    shape: tuple[int, int, int]
    subjects: int
    warmup: int
    steps: int
    backbones: list[str]
    loss_sizes: tuple[int, ...]
    search_cap: int
    workers: int
    smoke: bool


def settings(args: argparse.Namespace) -> Settings:
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: 2 OpenMP threads on a busy 2-core VM run 10-50x slower
        return Settings(torch.device("cpu"), tuple(args.shape or (16, 16, 16)), 2, 1, 1,
                        args.backbones or ["tiny_cnn3d"], (8, 16), 4, 1, True)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device; use --smoke for the CPU check")
    workers = max(1, min(15, (os.cpu_count() or 2) - 1))
    return Settings(torch.device("cuda"), tuple(args.shape or FULL_SHAPE), args.subjects, 3, args.steps,
                    args.backbones or ["resnet18_3d", "densenet121_3d"], (64, 1024), 2048, workers, False)


def best_variant(items: dict[str, Any], backbone: str) -> Variant:
    """The fastest eager variant that ``variants/<backbone>`` measured (the default one if none)."""
    found = items.get(f"variants/{backbone}", {}).get("best")
    return Variant(**found) if found else Variant()


def rate(subjects: int, seconds: float) -> float:
    """Volumes per second, both views counted."""
    return round(2 * subjects / seconds, 2)


def item_cpu_views(s: Settings) -> dict[str, Any]:
    """Per-sample MONAI y-aware views (2 per subject) on ``s.workers`` forked DataLoader workers."""
    from torch.utils.data import DataLoader, Dataset

    from medssl.transforms import monai_view_transform

    transform = monai_view_transform("yaware")
    pool = [torch.randn(1, *s.shape) for _ in range(2)]

    class TwoViews(Dataset):
        def __len__(self) -> int:
            return 3 * s.workers

        def __getitem__(self, i: int) -> list[torch.Tensor]:
            return [torch.as_tensor(transform({"image": pool[i % 2]})["image"]) for _ in range(2)]

    loader = DataLoader(TwoViews(), batch_size=None, num_workers=s.workers, multiprocessing_context="fork")
    arrivals = []
    for _ in loader:
        arrivals.append(time.perf_counter())
    steady = arrivals[s.workers - 1:]
    subjects_s = (len(steady) - 1) / (steady[-1] - steady[0])
    return {"workers": s.workers, "vol_per_s": round(2 * subjects_s, 2),
            "core_s_per_view": round(s.workers / (2 * subjects_s), 3), "samples": len(arrivals)}


def item_feed(s: Settings) -> dict[str, Any]:
    from cpu_bench import feed

    return feed(s.shape, n_files=4 if s.smoke else 12)


def item_gpu_views(s: Settings) -> dict[str, Any]:
    from medssl.registry import VIEWS

    out: dict[str, Any] = {"subjects": s.subjects}
    x = torch.randn(s.subjects, 1, *s.shape, device=s.device)
    for name in VIEWS.names():
        try:
            aug = VIEWS.build(name).to(s.device)
            t = time_calls(lambda: aug(x), s.device, *((1, 1) if s.smoke else (2, 5)), max_s=5.0)
            out[name] = {"vol_per_s": round(s.subjects / max(t["median_s"], 1e-6), 1),
                         "ms": round(1e3 * t["median_s"], 2)}
        except Exception as exc:  # noqa: BLE001  (one preset's failure must not hide the others)
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def item_losses(s: Settings) -> dict[str, Any]:
    from medssl.losses import build_loss

    specs = {"yaware": {"sigma": 5.0}, "exp": {"sigma": 2.0, "variant": "code", "base_temperature": 0.07},
             "fairkl": {"kernel": "rbf", "sigma": 2.0}}
    out: dict[str, Any] = {"dim": 128, "what": "forward + backward, bf16 embeddings, ms"}
    for name, kw in specs.items():
        loss = build_loss(name, **kw)
        for n in s.loss_sizes:
            z1, z2 = (torch.randn(n, 128, device=s.device, dtype=torch.bfloat16, requires_grad=True)
                      for _ in range(2))
            y, site = torch.rand(n, device=s.device) * 80 + 6, torch.randint(0, 60, (n,), device=s.device)
            t = time_calls(lambda: loss(z1, z2, y=y, bias=site).backward(), s.device,
                           *((1, 2) if s.smoke else (2, 10)), max_s=5.0)
            out[f"{name}@{n}"] = round(1e3 * t["median_s"], 3)
    return out


def item_gather(s: Settings) -> dict[str, Any]:
    """Time ``all_gather_into_tensor`` of z (2 views, bf16), y and site in a one-rank group."""
    import torch.distributed as dist

    backend = "nccl" if s.device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        store = dist.FileStore(os.path.join(tmp, "store"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1)
        try:
            n = s.subjects
            parts = [torch.randn(2 * n, 128, device=s.device, dtype=torch.bfloat16),
                     torch.rand(n, device=s.device), torch.randint(0, 60, (n,), device=s.device)]
            outs = [torch.empty_like(p) for p in parts]

            def gather() -> None:
                for o, p in zip(outs, parts):
                    dist.all_gather_into_tensor(o, p)

            t = time_calls(gather, s.device, 3, 20, max_s=5.0)
        finally:
            dist.destroy_process_group()
    return {"backend": backend, "world": 1, "us": round(1e6 * t["median_s"], 1),
            "note": "one rank: launch + local copy only; multi-GPU costs are modelled in scaling"}


def item_profile(backbone: str, s: Settings) -> dict[str, Any]:
    """Operators by device time over two of medssl's steps (``torch.profiler``, input shapes recorded)."""
    from torch.profiler import ProfilerActivity, profile

    from bench_steps import medssl_step

    torch.backends.cudnn.benchmark = True
    step = medssl_step(backbone, s.subjects, s.shape, s.device)
    time_calls(step.run, s.device, 2, 1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s.device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(2):
            step.run()
        sync(s.device)

    from torch.autograd import DeviceType

    def self_us(e: Any) -> float:
        if s.device.type == "cuda":
            return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0))
        return float(e.self_cpu_time_total)

    def top(events: list[Any], k: int, shapes: bool) -> list[dict[str, Any]]:
        rows = sorted(events, key=self_us, reverse=True)[:k]
        return [{"op": e.key[:120], **({"shapes": str(e.input_shapes)[:160]} if shapes else {}),
                 "calls_per_step": e.count / 2, "ms_per_step": round(self_us(e) / 2e3, 2),
                 "share": round(self_us(e) / total, 4)} for e in rows]

    # host-side operators own the device time of the kernels they launch; the kernels are listed too,
    # as device-side events: each kind alone sums to the step's device time (together they count it twice)
    ops = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU]
    kernels = [e for e in prof.key_averages() if e.device_type != DeviceType.CPU]
    total = sum(self_us(e) for e in (kernels or ops)) or 1.0
    shaped = [e for e in prof.key_averages(group_by_input_shape=True) if e.device_type == DeviceType.CPU]
    out = {"variant": step.notes["variant"], "device_ms_per_step": round(total / 2e3, 1),
           "by_op": top(ops, 15, False), "by_op_and_shape": top(shaped, 20, True), "kernels": top(kernels, 10, False)}
    del step
    free_memory(s.device)
    return out


def item_variants(backbone: str, s: Settings) -> dict[str, Any]:
    """medssl's step under each eager variant (memory format x stem), ``s.subjects`` subjects."""
    from bench_steps import medssl_step

    torch.backends.cudnn.benchmark = True
    out: dict[str, Any] = {"subjects": s.subjects}
    best, best_rate = None, 0.0
    for v in [Variant(stem_space_to_depth=False), Variant(), Variant(channels_last=False),
              Variant(channels_last=False, stem_space_to_depth=False)]:
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            step = medssl_step(backbone, s.subjects, s.shape, s.device, variant=v)
            t = time_calls(step.run, s.device, max(1, s.warmup - 1), s.steps, max_s=10.0)
        except Exception as exc:  # noqa: BLE001  (one variant's failure must not hide the others)
            out[v.label()] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            step = None
            free_memory(s.device)
            continue
        res = {"vol_per_s": rate(s.subjects, t["median_s"]), "step_s": t["median_s"],
               "spread_s": [t["min_s"], t["max_s"]]}
        if s.device.type == "cuda":
            res["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out[v.label()] = res
        if res["vol_per_s"] > best_rate:
            best, best_rate = v, res["vol_per_s"]
        del step
        free_memory(s.device)
    if best is not None:
        out["best"] = {k: getattr(best, k) for k in ("channels_last", "stem_space_to_depth")}
        out["best_label"] = best.label()
    return out


def item_gradcache(backbone: str, s: Settings, variant: Variant, deadline: float) -> dict[str, Any]:
    """Steps of ``n`` subjects x 2 views through the gradient cache (chunks of ``s.subjects``), the views
    made per chunk (``grad_cache.ViewMaker``): the batch holds only its images."""
    from dataclasses import replace

    from bench_steps import medssl_step

    torch.backends.cudnn.benchmark = True
    v = replace(variant, grad_cache_chunk=s.subjects)
    out: dict[str, Any] = {"variant": v.label(), "chunk_subjects": s.subjects,
                           "views_made": "per chunk (images held, views remade in pass 3)"}
    for n in [s.subjects * k for k in (8, 16, 32)]:
        if time.perf_counter() > deadline:
            out[str(n)] = {"skipped": "time"}
            break
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            step = medssl_step(backbone, n, s.shape, s.device, on_device=True, variant=v, views_per_chunk=True)
            t = time_calls(step.run, s.device, 1, 2 if not s.smoke else 1, max_s=20.0)
        except Exception as exc:  # noqa: BLE001
            out[str(n)] = {"error": "OOM" if is_oom(exc) else f"{type(exc).__name__}: {str(exc)[:160]}"}
            step = None
            free_memory(s.device)
            break
        res = {"vol_per_s": rate(n, t["median_s"]), "step_s": t["median_s"]}
        if s.device.type == "cuda":
            res["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out[str(n)] = res
        del step
        free_memory(s.device)
    return out


def try_train(backbone: str, s: Settings, kind: str, variant: Variant | None = None) -> dict[str, Any]:
    """Time ``kind`` (medssl / baseline) at the largest of the fallback batches that fits."""
    from bench_steps import baseline_step, count_flops, medssl_step

    tries = [(s.subjects, False), (s.subjects, True), (s.subjects // 2, True), (s.subjects // 4, True)]
    if kind == "baseline":
        tries = [(s.subjects, False), (s.subjects // 2, False), (s.subjects // 4, False)]
    tries = list(dict.fromkeys(t for t in tries if t[0] >= 1))
    failures = []
    for subjects, ckpt in tries:
        torch.backends.cudnn.benchmark = kind == "medssl"
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step, failed = None, False
        try:
            step = medssl_step(backbone, subjects, s.shape, s.device, ckpt, variant=variant or Variant()) \
                if kind == "medssl" else baseline_step(backbone, subjects, s.shape, s.device)
            t = time_calls(step.run, s.device, s.warmup, s.steps, max_s=20.0 if kind == "medssl" else 10.0)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            failures.append({"subjects": subjects, "checkpointing": ckpt, "error": "OOM"})
            failed = True
        if failed:
            step = None
            free_memory(s.device)  # outside the except: the traceback no longer holds the tensors
            continue
        res: dict[str, Any] = {"subjects": subjects, "vol_per_s": rate(subjects, t["median_s"]),
                               "step_s": round(t["median_s"], 5), "timing": t, **step.notes}
        if s.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated()
            res.update(peak_gib=round(peak / 2**30, 2), peak_mib_per_vol=round(peak / 2**20 / (2 * subjects), 1))
        if kind == "medssl":
            k = min(2, subjects)
            small = {key: v[:k] for key, v in step.batch.items()}
            res["train_gflop_per_vol"] = round(count_flops(step.method, small, [v[:k] for v in step.views])
                                               / (2 * k) / 1e9, 2)
            res["n_params"] = sum(p.numel() for p in step.method.parameters() if p.requires_grad)
        del step
        free_memory(s.device)
        return {**res, "fallbacks": failures}
    torch.backends.cudnn.benchmark = True
    raise RuntimeError(f"every batch OOM: {failures}")


def item_train(backbone: str, s: Settings, card: str, variant: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": list(s.shape)}
    out["medssl"] = try_train(backbone, s, "medssl", variant)
    try:
        out["baseline_gpu"] = try_train(backbone, s, "baseline")
    except Exception as exc:  # noqa: BLE001  (keep the medssl figures)
        out["baseline_gpu"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    torch.backends.cudnn.benchmark = True
    peak = bf16_peak(card)
    med = out["medssl"]
    if peak:
        achieved = med["train_gflop_per_vol"] * 1e9 * med["vol_per_s"]
        out["mfu"] = round(achieved / peak, 4)
        out["achieved_tflops"] = round(achieved / 1e12, 1)
    return out


def item_engine(backbone: str, s: Settings, variant: Variant, step: dict[str, Any] | None) -> dict[str, Any]:
    """The real ``train_loop`` fed by DataLoader workers, with and without the side-stream prefetch."""
    from bench_engine import engine_throughput

    workers = min(s.workers, 2 if s.smoke else 4)  # 4 x 2 batches of 272 MB in /dev/shm at a time
    out: dict[str, Any] = {}
    for prefetch in (True, False):
        out["prefetch" if prefetch else "no_prefetch"] = engine_throughput(
            backbone, s.subjects, s.shape, s.device, s.steps, s.warmup, workers, prefetch,
            channels_last=variant.channels_last)
        free_memory(s.device)
    out["prefetch_gain"] = round(out["prefetch"]["vol_per_s"] / out["no_prefetch"]["vol_per_s"], 3)
    if step and "vol_per_s" in step:  # the engine against the re-stated step on a ready pinned batch
        out["engine_over_step"] = round(out["prefetch"]["vol_per_s"] / step["vol_per_s"], 3)
    return out


def item_memory(backbone: str, s: Settings, deadline: float) -> dict[str, Any]:
    """Largest subjects x 2 views per step with bf16 + activation checkpointing (cudnn.benchmark off).

    A trial is one step of a fresh model on a batch made on the device; any error (OOM, or a kernel's
    32-bit indexing limit) counts as "does not fit" and is recorded.
    """
    from bench_steps import medssl_step

    torch.backends.cudnn.benchmark = False
    peaks: dict[int, float] = {}
    errors: dict[int, str] = {}
    notes: dict[str, Any] = {}

    def fits(n: int) -> bool:
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            notes.update(medssl_step(backbone, n, s.shape, s.device, checkpointing=True, on_device=True).notes)
            if s.device.type == "cuda":
                peaks[n] = torch.cuda.max_memory_allocated() / 2**30
            ok = True
        except Exception as exc:  # noqa: BLE001
            errors[n] = "OOM" if is_oom(exc) else f"{type(exc).__name__}: {str(exc)[:160]}"
            ok = False
        free_memory(s.device)
        return ok

    start = time.perf_counter()
    found = largest_fitting(fits, 64 if not s.smoke else 2, s.search_cap, lambda: time.perf_counter() < deadline)
    torch.backends.cudnn.benchmark = True
    ns = sorted(peaks)
    slope = (peaks[ns[-1]] - peaks[ns[0]]) * 1024 / (2 * (ns[-1] - ns[0])) if len(ns) > 1 else None
    return {**found, "checkpointing": notes.get("checkpointing"), "errors": {str(k): v for k, v in errors.items()},
            "peak_gib": {str(k): round(v, 2) for k, v in peaks.items()},
            "mib_per_vol_checkpointed": round(slope, 1) if slope else None,
            "search_s": round(time.perf_counter() - start, 1), "capped_at": s.search_cap}


def item_compile(backbone: str, s: Settings, eager: dict[str, Any] | None, variant: Variant) -> dict[str, Any]:
    """``torch.compile`` of the backbone (inductor; the smoke run traces with dynamo only, no C++ build)."""
    from dataclasses import replace

    from bench_steps import medssl_step

    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    step = medssl_step(backbone, s.subjects, s.shape, s.device, variant=replace(variant, compile=True))
    step.run()
    compile_s = time.perf_counter() - t0
    t = time_calls(step.run, s.device, 1, s.steps, max_s=15.0)
    res = {"backend": "eager" if s.smoke else "inductor", "variant": step.notes["variant"],
           "compile_s": round(compile_s, 1), "vol_per_s": rate(s.subjects, t["median_s"])}
    if s.device.type == "cuda":
        res["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if eager and "vol_per_s" in eager:
        res["speedup_vs_eager"] = round(res["vol_per_s"] / eager["vol_per_s"], 3)
    return res


def derive(items: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Speed-ups, CPU workers needed, loss share of the step and the scaling table."""
    from bench_scaling import predict

    out: dict[str, Any] = {}
    cpu = items.get("cpu_views", {}).get("vol_per_s")
    feed = items.get("feed", {}).get("cohort_dataset_vol_per_s") or items.get("feed", {}).get("raw_npy_vol_per_s")
    for backbone in s.backbones:
        tr = items.get(f"train/{backbone}", {})
        med, base = tr.get("medssl", {}), tr.get("baseline_gpu", {})
        if "vol_per_s" not in med:
            continue
        d: dict[str, Any] = {"medssl_vol_per_s": med["vol_per_s"]}
        if "vol_per_s" in base:
            d["baseline_gpu_vol_per_s"] = base["vol_per_s"]
            d["speedup_compute"] = round(med["vol_per_s"] / base["vol_per_s"], 2)
            if cpu:
                end_to_end = min(base["vol_per_s"], cpu)
                d["baseline_end_to_end_vol_per_s"] = end_to_end
                d["speedup_end_to_end"] = round(med["vol_per_s"] / end_to_end, 2)
        if feed:
            d["cpu_workers_needed"] = round(med["vol_per_s"] / 2 / feed, 1)
            d["cpu_workers_available"] = s.workers
        losses = items.get("losses", {})
        per_vol = med["step_s"] / (2 * med["subjects"])
        for key, ms in losses.items():
            if "@" in key:
                n = int(key.split("@")[1])
                d[f"loss_share/{key}"] = round(ms / 1e3 / (per_vol * 2 * n), 5)
        times = {int(k.split("@")[1]): v / 1e3 for k, v in losses.items() if k.startswith("yaware@")}
        if times and "n_params" in med:
            d["scaling"] = predict(med["step_s"], med["subjects"], med["n_params"], times)
        out[backbone] = d
    return out


def merge_runs(paths: list[Path]) -> dict[str, Any]:
    """One summary from several runs' ``gpu.json`` on the same kind of card: items from later files
    replace earlier ones, ``sources`` says which file each item came from, and ``derived`` is recomputed
    from the merged items (e.g. a new step time with an earlier run's loss timings and CPU workers)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    cards = {r["items"].get("environment", {}).get("card") for r in runs} - {None}
    if len(cards) > 1:
        raise SystemExit(f"gpu_bench --merge: runs on different cards {sorted(cards)}; compare like with like")
    items: dict[str, Any] = {}
    sources: dict[str, str] = {}
    backbones: list[str] = []
    for path, run in zip(paths, runs):
        items.update(run["items"])
        sources.update({name: Path(path).name for name in run["items"]})
        backbones += [b for b in run["settings"]["backbones"] if b not in backbones]
    last = runs[-1]["settings"]
    s = Settings(torch.device("cpu"), tuple(last["shape"]), last["subjects"], 0, 0, backbones, (), 0,
                 last["workers"], False)
    return {"status": "merged", "items": items, "sources": sources, "derived": derive(items, s),
            "settings": {**last, "backbones": backbones, "merged_from": [Path(p).name for p in paths]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="folder for gpu.json (printed either way)")
    p.add_argument("--smoke", action="store_true", help="same code on CPU, tiny sizes")
    p.add_argument("--budget", type=float, default=300.0, help="soft budget in seconds (items are skipped)")
    p.add_argument("--hard", type=float, default=330.0, help="watchdog: write and exit after this many s")
    p.add_argument("--subjects", type=int, default=32, help="subjects per step (x 2 views)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    p.add_argument("--backbones", nargs="*", default=None)
    p.add_argument("--shape", nargs=3, type=int, default=None, metavar=("D", "H", "W"),
                   help="volume size (default 121 145 121; smoke 16 16 16)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile item")
    p.add_argument("--skip", nargs="*", default=[],
                   help="item kinds to leave out (cpu_views feed gpu_views losses gather profile variants train "
                        "gradcache engine compile memory)")
    p.add_argument("--gradcache-s", type=float, default=40.0, help="time cap of the gradient-cache item")
    p.add_argument("--compile-all", action="store_true", help="compile every backbone, not only the first")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="GPU_JSON",
                   help="no run: merge earlier runs' results (later files win) into OUT/gpu_merged.json")
    args = p.parse_args(argv)
    if args.merge:
        merged = merge_runs(args.merge)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "gpu_merged.json").write_text(json.dumps(merged, indent=1) + "\n")
        print(json.dumps(merged["derived"]))
        return 0
    s = settings(args)
    skip = set(args.skip) | ({"compile"} if args.no_compile else set())
    bench = Bench(args.out, "gpu.json", args.budget, None if s.smoke else args.hard)
    bench.set("settings", {"shape": s.shape, "subjects": s.subjects, "backbones": s.backbones,
                           "smoke": s.smoke, "workers": s.workers, "command": " ".join(sys.argv)})
    items = bench.summary["items"]

    def run(name: str, fn: Any, min_s: float) -> Any:
        """``bench.run`` unless ``--skip`` names the item's kind (the part before ``/``)."""
        return None if name.split("/")[0] in skip else bench.run(name, fn, min_s)

    run("cpu_views", lambda: item_cpu_views(s), min_s=20)
    run("feed", lambda: item_feed(s), min_s=10)
    env = bench.run("environment", lambda: environment(s.device))
    card = (env or {}).get("card", "cpu")
    run("gpu_views", lambda: item_gpu_views(s), min_s=10)
    run("losses", lambda: item_losses(s), min_s=10)
    run("gather", lambda: item_gather(s), min_s=10)
    for i, backbone in enumerate(s.backbones):  # the first backbone's items first: they matter most
        if i == 0:
            run(f"profile/{backbone}", lambda: item_profile(backbone, s), min_s=20)
        run(f"variants/{backbone}", lambda: item_variants(backbone, s), min_s=30)
        run(f"train/{backbone}", lambda: item_train(backbone, s, card, best_variant(items, backbone)), min_s=40)
        bench.set("derived", derive(items, s))
        if i == 0:
            deadline = time.perf_counter() + max(0.0, min(bench.remaining() - 10, args.gradcache_s))
            run(f"gradcache/{backbone}", lambda: item_gradcache(backbone, s, best_variant(items, backbone), deadline),
                min_s=20)
        if i == 0:
            run(f"engine/{backbone}", lambda: item_engine(backbone, s, best_variant(items, backbone),
                                                          items.get(f"train/{backbone}", {}).get("medssl")),
                min_s=30)
        if i == 0 or args.compile_all:
            eager = items.get(f"train/{backbone}", {}).get("medssl")
            run(f"compile/{backbone}", lambda: item_compile(backbone, s, eager, best_variant(items, backbone)),
                min_s=10 if s.smoke else 60)
        if i > 0:
            run(f"profile/{backbone}", lambda: item_profile(backbone, s), min_s=20)
    for i, backbone in enumerate(s.backbones):
        deadline = time.perf_counter() + max(0.0, min(bench.remaining() - 10, 75.0 if i == 0 else 60.0))
        run(f"memory/{backbone}", lambda: item_memory(backbone, s, deadline), min_s=15)
    bench.set("derived", derive(items, s))
    bench.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
