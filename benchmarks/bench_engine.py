"""The real training loop end to end: ``medssl.engine.train.train_loop`` fed by DataLoader workers.

``gpu_bench.py``'s ``train`` item times a re-statement of one step on a batch already in pinned
memory. This item runs the engine itself, so it also pays what a user's run pays on the host: workers
collating 32 volumes into shared memory, the pin-memory thread, the per-step loss read-back, the
progress bookkeeping. It runs with and without the side-stream prefetch of the next batch
(``medssl.engine.prefetch``; "without" = the copy issued on the compute stream at the start of the step).

Figures: the median of the per-step volumes/s the loop itself logs (``metrics.jsonl``, both views
counted), after ``warmup`` steps (cuDNN autotuning, worker start-up).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch.utils.data import Dataset

import medssl.engine.feed as feed
import medssl.engine.train as engine
from bench_steps import augmenter, build_method
from medssl.config import TrainConfig


class RepeatedVolumes(Dataset):
    """``n`` items cycling over ``distinct`` random volumes, with ages and sites (what collation copies)."""

    def __init__(self, n: int, shape: tuple[int, int, int], distinct: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.volumes = torch.randn(distinct, 1, *shape, generator=g)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.volumes[i % len(self.volumes)].clone(),
                "age": torch.tensor(6.0 + i % 80), "site": torch.tensor(i % 60)}


def engine_throughput(backbone: str, subjects: int, shape: tuple[int, int, int], device: torch.device,
                      steps: int, warmup: int, workers: int, prefetch: bool,
                      channels_last: bool = True) -> dict[str, Any]:
    """Median volumes/s of ``steps`` logged steps of ``train_loop`` (bf16, y-aware views on the device)."""
    cfg = TrainConfig(epochs=1, batch_size=subjects, lr=1e-4, device=device.type, log_every=1,
                      precision="bf16" if device.type == "cuda" else "fp32",
                      channels_last=channels_last, max_steps_per_epoch=warmup + steps)
    dataset = RepeatedVolumes(subjects * (warmup + steps), shape)
    method = build_method(backbone)
    # without a copy stream, device_batches moves each batch in the step (the engine's CPU path)
    patch = contextlib.nullcontext() if prefetch else mock.patch.object(feed, "side_stream", lambda device: None)
    with tempfile.TemporaryDirectory() as run_dir, patch:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        engine.train_loop(method, dataset, augmenter(device), cfg, run_dir, device=device,
                          num_workers=workers, tensorboard=False)
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(ln)["vol_per_s"] for ln in lines if "vol_per_s" in json.loads(ln)]
    timed = rates[warmup:]
    return {"vol_per_s": round(statistics.median(timed), 1), "steps": len(timed), "workers": workers,
            "prefetch": prefetch, "subjects": subjects}
