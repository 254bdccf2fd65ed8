"""``benchmarks/bench_views.py`` runs end to end at a tiny size (timings themselves are not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_bench_views_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_views", ROOT / "benchmarks" / "bench_views.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "views.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--batch", "2", "--size", "12", "--reps", "1", "--threads", str(threads),
                           "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["shape"] == [1, 12, 12, 12]
    row = result["cases"]["yaware (p=0.5)"]
    assert row["torch_batched_ms_per_volume"] > 0 and row["monai_per_sample_ms_per_volume"] > 0
    assert {"flip (p=1)", "blur (p=1)", "affine (p=1)", "crop_resize (p=1)"} <= set(result["cases"])
