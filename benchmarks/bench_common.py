"""Shared pieces of the benchmark scripts: a budgeted item runner, timers, card peaks, OOM search.

The runner records every item's result or error in one summary, writes it (atomically) and prints it as
one JSON line after each item, so a run killed at any point still leaves its partial figures. A watchdog
thread writes the summary and ends the process at a hard deadline, even when the main thread is stuck
inside a CUDA call.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity), from the vendors' data sheets; matched in order
# against torch.cuda.get_device_name().
BF16_PEAK_FLOPS: list[tuple[str, float]] = [
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12),
    ("H100", 989e12), ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12),
    ("L40S", 362e12), ("L4", 121e12), ("A10G", 70e12), ("RTX 4090", 165e12),
]


# HBM bandwidth (bytes/s) from the same data sheets, for the roofline (benchmarks/roofline.py).
HBM_BYTES_PER_S: list[tuple[str, float]] = [
    ("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12),
    ("A100 80GB PCIe", 1.935e12), ("A100 80GB", 2.039e12), ("A100", 1.555e12),
]


def card_figure(table: list[tuple[str, float]], card: str) -> float | None:
    """The first entry of ``table`` whose key occurs in ``card`` (case-insensitive), or None."""
    for key, value in table:
        if key.lower() in card.lower():
            return value
    return None


def bf16_peak(card: str) -> float | None:
    """Dense bf16 peak in FLOP/s of the card named ``card`` (None when it is not in the table)."""
    return card_figure(BF16_PEAK_FLOPS, card)


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA OOM, or a CPU allocator failure)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached blocks, e.g. after an OOM (call outside the ``except``)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any], device: torch.device, warmup: int, iters: int, max_s: float = 60.0
) -> dict[str, Any]:
    """Wall time of ``fn()`` per call (device synchronised around each call), after ``warmup`` calls.

    Stops early (after at least one timed call) when the timed calls exceed ``max_s`` seconds.
    Returns median/min/max seconds, the number of timed calls and the warm-up seconds.
    """
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync(device)
    warm_s = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > max_s:
            break
    return {"median_s": round(statistics.median(times), 5), "min_s": round(min(times), 5),
            "max_s": round(max(times), 5), "n": len(times), "warmup_s": round(warm_s, 3)}


def largest_fitting(
    fits: Callable[[int], bool], start: int, cap: int, time_left: Callable[[], bool], refine: int = 2,
    multiple: int = 8,
) -> dict[str, Any]:
    """The largest ``n`` with ``fits(n)``: double from ``start`` up to ``cap``, then bisect ``refine`` times.

    If ``start`` does not fit, halve down to 1 first. ``time_left()`` is checked before every trial; the
    search returns what it knows when time runs out. Bisection midpoints are rounded down to a
    ``multiple`` (when that still lies strictly between the bounds).

    Returns:
        ``{"largest_ok": int | None, "smallest_failed": int | None, "trials": [[n, ok], ...]}``.
    """
    ok, failed, trials = None, None, []

    def trial(n: int) -> bool:
        result = fits(n)
        trials.append([n, result])
        return result

    n = start
    while n >= 1 and ok is None and time_left():
        if trial(n):
            ok = n
        else:
            failed, n = n, n // 2
    n = (ok or 0) * 2
    while ok is not None and failed is None and n <= cap and time_left():
        if trial(n):
            ok, n = n, n * 2
        else:
            failed = n
    for _ in range(refine):
        if ok is None or failed is None or failed - ok <= 1 or not time_left():
            break
        mid = (ok + failed) // 2
        rounded = mid - mid % multiple
        mid = rounded if ok < rounded < failed else mid
        if trial(mid):
            ok = mid
        else:
            failed = mid
    return {"largest_ok": ok, "smallest_failed": failed, "trials": trials}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, host and card, for the results file."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    for name in ("monai", "numpy"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(card=props.name, card_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    bf16_peak_tflops=(bf16_peak(props.name) or 0) / 1e12 or None)
    from medssl.utils.repro import git_sha

    info["git_sha"] = git_sha(Path(__file__).resolve().parent)
    return info


class Bench:
    """A budgeted sequence of named items whose results go to one JSON summary.

    Args:
        out: folder for ``name`` (None: print only).
        name: results file name, e.g. ``gpu.json``.
        budget_s: soft budget: ``run`` skips an item when less than its ``min_s`` remains.
        hard_s: hard deadline: a watchdog writes the summary and exits the process (code 3).
    """

    def __init__(self, out: Path | None, name: str, budget_s: float, hard_s: float | None = None) -> None:
        self.out, self.name, self.budget_s = out, name, budget_s
        self.t0 = time.perf_counter()
        self.summary: dict[str, Any] = {"status": "running", "items": {}}
        self.lock = threading.Lock()
        if hard_s is not None:
            timer = threading.Timer(hard_s, self._kill)
            timer.daemon = True
            timer.start()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def run(self, name: str, fn: Callable[[], Any], min_s: float = 0.0) -> Any:
        """Run ``fn()`` as item ``name``; record its result, or the error, or why it was skipped."""
        if self.remaining() < min_s:
            self.record(name, {"skipped": f"time budget: {self.remaining():.0f} s left, needs {min_s:.0f} s"})
            return None
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001  (a benchmark item must not stop the others)
            result = None
            self.record(name, {"error": f"{type(exc).__name__}: {str(exc)[:300]}",
                               "where": traceback.format_exc(limit=-2).strip()[-400:]})
        else:
            self.record(name, {**result, "item_s": round(time.perf_counter() - t, 2)}
                        if isinstance(result, dict) else {"value": result})
        return result

    def record(self, name: str, value: Any) -> None:
        with self.lock:
            self.summary["items"][name] = value
            self.summary["elapsed_s"] = round(self.elapsed(), 1)
        self.dump()

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.summary[key] = value

    def dump(self) -> None:
        """Print the summary as one JSON line and write it to ``out/name`` (atomically)."""
        with self.lock:
            text = json.dumps(self.summary, default=_jsonable, separators=(",", ":"))
        print(text, flush=True)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.out / f".{self.name}.tmp"
            tmp.write_text(json.dumps(json.loads(text), indent=1) + "\n")
            os.replace(tmp, self.out / self.name)

    def finish(self) -> None:
        self.set("status", "done")
        self.set("elapsed_s", round(self.elapsed(), 1))
        self.dump()

    def _kill(self) -> None:
        self.set("status", f"killed by the watchdog after {self.elapsed():.0f} s")
        try:
            self.dump()
        finally:
            sys.stdout.flush()
            os._exit(3)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    return repr(obj)
