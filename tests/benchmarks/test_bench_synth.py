"""``benchmarks/bench_synth.py`` runs end to end at tiny size on the CPU (its timings are not checked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_bench_synth_smoke(tmp_path: Path) -> None:
    import bench_synth

    out = tmp_path / "synth.json"
    assert bench_synth.main(["--smoke", "--repeat", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = result["command_run"]
    assert set(runs) == {"10", "14", "marginal"} and "baseline" not in result
    for n in (10, 14):  # two float32 volumes of 10x12x10 per subject (+ .npy headers), masks, table
        volumes = n * 2 * 10 * 12 * 10 * 4
        assert volumes < runs[str(n)]["bytes_written"] < volumes + n * 2 * 128 + 60_000
    assert runs["14"]["argv"][-2:] == ["vbm", "quasiraw"] and "--device" in runs["14"]["argv"]
    sim = result["simulate"]
    assert sim["subjects"] == 4 and sim["device_s_per_subject"] > 0 and sim["host_draw_s_per_subject"] > 0
