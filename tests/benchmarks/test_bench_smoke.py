"""The benchmark scripts: their CPU smoke runs, and the pieces whose numbers can be checked exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_scaling  # noqa: E402
from bench_common import Bench, bf16_peak, largest_fitting  # noqa: E402
from bench_steps import count_flops  # noqa: E402


def test_gpu_bench_smoke_runs_every_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gpu_bench

    assert gpu_bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "gpu.json").read_text())
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last_line) == summary  # the printed summary is the written one
    assert summary["status"] == "done"
    items = summary["items"]
    expected = {"cpu_views", "feed", "environment", "gpu_views", "losses", "gather", "profile/tiny_cnn3d",
                "variants/tiny_cnn3d", "train/tiny_cnn3d", "gradcache/tiny_cnn3d", "memory/tiny_cnn3d",
                "engine/tiny_cnn3d",
                "compile/tiny_cnn3d"}
    assert set(items) == expected
    failed = {k: v for k, v in items.items() if "error" in v or "skipped" in v}
    assert not failed, failed
    train = items["train/tiny_cnn3d"]
    assert train["medssl"]["vol_per_s"] > 0 and train["baseline_gpu"]["vol_per_s"] > 0
    assert train["medssl"]["vol_per_s"] == pytest.approx(4 / train["medssl"]["step_s"], rel=1e-3)
    assert items["memory/tiny_cnn3d"]["largest_ok"] == 4  # the smoke cap: everything fits
    variants = items["variants/tiny_cnn3d"]
    fastest = max((v for v in variants.values() if isinstance(v, dict) and "vol_per_s" in v),
                  key=lambda v: v["vol_per_s"])
    assert variants[variants["best_label"]] == fastest
    assert train["medssl"]["variant"] == variants["best_label"]  # the train item uses the fastest
    assert [k for k in items["gradcache/tiny_cnn3d"] if k.isdigit()] == ["16", "32", "64"]
    assert items["profile/tiny_cnn3d"]["by_op"][0]["share"] > 0
    derived = summary["derived"]["tiny_cnn3d"]
    assert derived["speedup_compute"] == pytest.approx(
        train["medssl"]["vol_per_s"] / train["baseline_gpu"]["vol_per_s"], rel=0.01)
    assert [r["gpus"] for r in derived["scaling"]["rows"]] == [1, 2, 4, 8, 16, 32, 64]


def test_train_falls_back_after_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OOM without checkpointing retries with it, then at half the batch; each failure is recorded."""
    import bench_steps
    import gpu_bench

    real = bench_steps.medssl_step

    def flaky(backbone: str, subjects: int, *args: object, **kwargs: object) -> bench_steps.Step:
        if subjects > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(backbone, subjects, *args, **kwargs)

    monkeypatch.setattr(bench_steps, "medssl_step", flaky)
    s = gpu_bench.Settings(torch.device("cpu"), (16, 16, 16), 2, 0, 1, ["tiny_cnn3d"], (8,), 4, 1, True)
    out = gpu_bench.try_train("tiny_cnn3d", s, "medssl")
    assert out["subjects"] == 1
    assert out["fallbacks"] == [{"subjects": 2, "checkpointing": False, "error": "OOM"},
                                {"subjects": 2, "checkpointing": True, "error": "OOM"}]
    monkeypatch.setattr(bench_steps, "medssl_step", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # anything but an OOM is not retried
        gpu_bench.try_train("tiny_cnn3d", s, "medssl")


def test_cpu_bench_smoke_and_refusal(tmp_path: Path) -> None:
    import cpu_bench

    assert cpu_bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    items = json.loads((tmp_path / "cpu.json").read_text())["items"]
    assert {"environment", "feed", "tiny_step"} <= set(items)
    assert not [k for k, v in items.items() if "error" in v], items
    assert items["feed"]["cohort_dataset_vol_per_s"] > 0
    assert items["tiny_step"]["vol_per_s"] == pytest.approx(2 * 16 / items["tiny_step"]["step_s"], rel=0.01)
    with pytest.raises(SystemExit, match="overwrite"):
        cpu_bench.main(["--smoke", "--out", str(tmp_path)])


def test_eval_bench_smoke(tmp_path: Path) -> None:
    import bench_eval

    assert bench_eval.main(["--smoke", "--data", str(tmp_path / "data"), "--out", str(tmp_path)]) == 0
    items = json.loads((tmp_path / "eval_cpu.json").read_text())["items"]
    assert not [k for k, v in items.items() if "error" in v], items
    assert items["probes"]["identical"] is True  # threads give the serial metrics
    cache = items["cache"]
    assert cache["batches"] == cache["scans"] // cache["batch"] and cache["gb"] == round(
        cache["scans"] * 16**3 * 2 / 1e9, 3)
    assert items["embed"]["max_rel_diff_bf16"] < 0.01 and items["evaluate"]["evaluate_s"] > 0


class _ConvOnly(nn.Module):
    """A method whose only FLOPs are one convolution: loss = sum(conv(cat(views)))."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv3d(2, 4, 3, padding=1, bias=False)

    def forward(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": self.backbone(torch.cat(views)).float().sum()}


def test_count_flops_matches_the_closed_form() -> None:
    views = [torch.randn(3, 2, 5, 6, 7) for _ in range(2)]
    forward = 2 * 4 * 2 * 27 * (5 * 6 * 7) * 6  # 2 x C_out x C_in x k^3 x output voxels x volumes
    # the input needs no gradient: the backward is the weight gradient only, as costly as the forward
    assert count_flops(_ConvOnly(), {}, views) == 2 * forward


def test_largest_fitting_doubles_then_bisects() -> None:
    fits = lambda n: n <= 300  # noqa: E731
    found = largest_fitting(fits, 64, 4096, lambda: True, refine=2)
    assert [n for n, _ in found["trials"]] == [64, 128, 256, 512, 384, 320]
    assert (found["largest_ok"], found["smallest_failed"]) == (256, 320)
    exact = largest_fitting(fits, 64, 4096, lambda: True, refine=20, multiple=1)
    assert (exact["largest_ok"], exact["smallest_failed"]) == (300, 301)
    small = largest_fitting(lambda n: n <= 10, 64, 4096, lambda: True, refine=20, multiple=1)
    assert (small["largest_ok"], small["smallest_failed"]) == (10, 11)
    assert largest_fitting(fits, 64, 4096, lambda: False)["trials"] == []
    assert largest_fitting(fits, 64, 128, lambda: True)["largest_ok"] == 128  # the cap stops doubling


def test_bf16_peak_table() -> None:
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert bf16_peak("NVIDIA H200") == 989e12
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert bf16_peak("cpu") is None


def test_scaling_model_closed_forms() -> None:
    link = bench_scaling.LINKS["nvlink"]
    assert bench_scaling.all_gather_s(1e6, 1) == 0.0 and bench_scaling.all_reduce_s(1e6, 1) == 0.0
    assert bench_scaling.all_gather_s(1e6, 4) == pytest.approx(3 * (link["alpha"] + 1e6 / link["bw"]))
    assert bench_scaling.all_reduce_s(8e6, 4) == pytest.approx(6 * (link["alpha"] + 2e6 / link["bw"]))
    ib = bench_scaling.LINKS["ib"]
    assert bench_scaling.all_gather_s(1e6, 16) == pytest.approx(15 * (ib["alpha"] + 1e6 / ib["bw"]))
    assert bench_scaling.fit_quadratic({64: 1.0, 1024: 1.0}) == (1.0, 0.0)
    a, b = bench_scaling.fit_quadratic({10: 2.0, 20: 5.0})
    assert a + b * 100 == pytest.approx(2.0) and a + b * 400 == pytest.approx(5.0)
    out = bench_scaling.predict(0.1, 32, 33_000_000, {64: 1e-3, 1024: 4e-3})
    rows = out["rows"]
    assert rows[0]["vol_per_s"] == pytest.approx(640.0) and rows[0]["efficiency"] == 1.0
    eff = [r["efficiency"] for r in rows]
    assert eff == sorted(eff, reverse=True) and 0 < eff[-1] < 1
    for r in rows:  # the throughput follows from the efficiency
        assert r["vol_per_s"] == pytest.approx(r["gpus"] * 640.0 * r["efficiency"], rel=2e-3)


def test_bench_records_errors_skips_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = Bench(tmp_path, "x.json", budget_s=60.0)
    bench.run("skipped", lambda: {"a": 1}, min_s=100)
    bench.run("fails", lambda: 1 / 0)
    bench.run("works", lambda: {"a": 1})
    bench.finish()
    data = json.loads((tmp_path / "x.json").read_text())
    assert "skipped" in data["items"]["skipped"] and "ZeroDivisionError" in data["items"]["fails"]["error"]
    assert data["items"]["works"]["a"] == 1 and data["status"] == "done"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1]) == data


def test_watchdog_writes_and_exits(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(BENCH)!r})
        from bench_common import Bench
        bench = Bench(__import__("pathlib").Path({str(tmp_path)!r}), "w.json", 60, hard_s=1.0)
        bench.record("first", {{"a": 1}})
        time.sleep(30)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["status"].startswith("killed by the watchdog") and data["items"]["first"] == {"a": 1}


def test_merge_runs_takes_later_items_and_recomputes_derived(tmp_path: Path) -> None:
    import gpu_bench

    def run(name: str, vol_per_s: float, extra: dict) -> Path:
        summary = {"settings": {"shape": [16, 16, 16], "subjects": 2, "backbones": ["tiny_cnn3d"], "workers": 1},
                   "items": {"environment": {"card": "cpu"}, **extra,
                             "train/tiny_cnn3d": {"medssl": {"vol_per_s": vol_per_s, "step_s": 4 / vol_per_s,
                                                             "subjects": 2},
                                                  "baseline_gpu": {"vol_per_s": 100.0}}}}
        path = tmp_path / name
        path.write_text(json.dumps(summary))
        return path

    first = run("a.json", 150.0, {"cpu_views": {"vol_per_s": 80.0}})
    second = run("b.json", 300.0, {})
    assert gpu_bench.main(["--merge", str(first), str(second), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "gpu_merged.json").read_text())
    assert merged["sources"] == {"environment": "b.json", "cpu_views": "a.json", "train/tiny_cnn3d": "b.json"}
    derived = merged["derived"]["tiny_cnn3d"]
    assert derived["speedup_compute"] == 3.0  # 300 / 100: the later run's step
    assert derived["speedup_end_to_end"] == pytest.approx(300 / 80)  # the earlier run's CPU augmentation
    other = tmp_path / "c.json"
    other.write_text(first.read_text().replace('"card": "cpu"', '"card": "H100"'))
    with pytest.raises(SystemExit, match="different cards"):
        gpu_bench.main(["--merge", str(first), str(other)])


def test_recipe_bench_smoke_projects_from_the_runs_own_timestamps(tmp_path: Path) -> None:
    import bench_recipe

    out = tmp_path / "recipe.json"
    assert bench_recipe.main(["--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for arm in ("once", "twice"):
        run = result[arm]
        # 32 subjects: the training split's 20, in 5 steps of 4; two epochs, the second timed
        assert run["subjects_per_epoch"] == 20 and len(run["epoch_s"]) == 2
        assert run["vol_per_s"] == pytest.approx(2 * 20 / run["epoch_s"][1], rel=1e-2)
        assert run["projected_recipe_min"] == pytest.approx(2 * 3227 * 300 / run["vol_per_s"] / 60, abs=0.1)
        assert "data.cache=device" in run["overrides"]
    assert result["speedup_identical_views_once"] == pytest.approx(
        result["once"]["vol_per_s"] / result["twice"]["vol_per_s"], rel=1e-12)
