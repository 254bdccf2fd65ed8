"""benchmarks/roofline.py: bytes and FLOPs of known operators in closed form, and the bound's formula."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import roofline  # noqa: E402


def test_relu_traffic_is_two_passes_forward_and_three_backward() -> None:
    x = torch.randn(2, 4, 8, 8, 8, device="meta", requires_grad=True)
    size = x.numel() * x.element_size()
    flops, by_op, calls = roofline.trace(lambda: torch.relu(x).sum().backward())
    assert flops == 0
    assert by_op["relu"] == 2 * size  # read x, write y
    assert by_op["threshold_backward"] == 3 * size  # read dy and y, write dx
    assert calls["relu"] == calls["threshold_backward"] == 1


def test_convolution_flops_are_counted_and_its_bytes_are_not() -> None:
    conv = nn.Conv3d(2, 3, 3, bias=False, device="meta")
    x = torch.empty(1, 2, 6, 6, 6, device="meta")  # no grad: forward + weight gradient only
    flops, by_op, _ = roofline.trace(lambda: conv(x).sum().backward())
    forward = 2 * 3 * 2 * 27 * 4**3  # 2 x C_out x C_in x k^3 x output voxels
    assert flops == 2 * forward
    assert not {"convolution", "convolution_backward"} & set(by_op)


def test_bound_is_compute_plus_memory_time() -> None:
    assert roofline.step_time_bound(2e12, 3e9, peak=1e15, bandwidth=1e12, eta=0.5) == pytest.approx(
        2e12 / 5e14 + 3e9 / 1e12)


def test_script_writes_bounds_that_order_as_they_must(tmp_path: Path) -> None:
    out, measured = tmp_path / "roofline.json", tmp_path / "gpu.json"
    measured.write_text(json.dumps({"items": {"train/resnet18_3d": {"medssl": {"vol_per_s": 500.0}},
                                              "gpu_views": {"yaware": {"vol_per_s": 4000.0}}}}))
    assert roofline.main(["--backbones", "resnet18_3d", "--shape", "32", "40", "32", "--out", str(out),
                          "--measured", str(measured)]) == 0
    result = json.loads(out.read_text())["backbones"]["resnet18_3d"]
    assert result["measured"] == {"step_ms_per_volume": 2.0, "vol_per_s": 500.0, "views_ms_per_volume": 0.25}
    assert (tmp_path / "roofline.png").stat().st_size > 10_000
    bounds = result["bounds"]
    assert bounds["eager@eta=1.0"]["vol_per_s"] > bounds["eager@eta=0.47"]["vol_per_s"]
    assert bounds["fused_bn_relu@eta=0.47"]["mfu"] > bounds["eager@eta=0.47"]["mfu"]
    assert all(0 < b["mfu"] < 1 for b in bounds.values())
