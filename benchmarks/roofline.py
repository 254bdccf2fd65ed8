"""The eager roofline of a training step: the most volumes/s, and the highest MFU, a step can reach.

    python benchmarks/roofline.py     # resnet18_3d, densenet121_3d -> results/roofline.{json,png}

One forward + backward of backbone + projection head (2 volumes of 1x121x145x121, bf16 activations as
under autocast) is traced on PyTorch's meta device, which computes shapes only (seconds on a laptop,
no GPU), and every aten operator it runs is put in one of two classes:

- compute: convolutions and matrix products; FLOPs from ``torch.utils.flop_counter`` (2 per
  multiply-add, the MFU numerator of ``gpu_bench.py``; the stem is counted as the plain strided
  convolution);
- memory-bound: every other operator that is not a view; bytes = its tensor inputs + outputs, each
  read or written once (BatchNorm, ReLU, pooling, residual adds, concatenation, their backwards).

Kernels of one CUDA stream run one after another, so a step of ``B`` volumes takes at least
``B * (FLOPs / (eta * peak) + bytes / bandwidth)``, with ``eta`` the fraction of the bf16 peak the
convolutions reach and every memory-bound kernel at full HBM bandwidth: the **eager bound** on
volumes/s and on MFU = FLOPs x volumes/s / peak. With ``eta = 1`` it bounds any eager PyTorch step;
``--conv-efficiency`` (default 0.47) is what the 3^3 convolutions of ResNet-18's first stage reached on
an H100 (run 2's profile: forward 45 %, backward 47 % of 989 TFLOP/s). ``fused_bn_relu`` drops the
ReLU bytes (a BatchNorm + ReLU kernel pair fused into one). Not counted: the views (measured apart,
``gpu_views``), the loss, the optimiser (~0.3 GB per step for 11 M parameters), launch gaps.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import BF16_PEAK_FLOPS, HBM_BYTES_PER_S, card_figure  # noqa: E402
from bench_steps import build_method  # noqa: E402

from medssl.utils.io import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMPUTE_OPS = {"convolution", "_convolution", "convolution_backward", "cudnn_convolution", "mm",
               "addmm", "bmm", "matmul", "linear"}
RELU_OPS = {"relu", "relu_", "threshold_backward"}


def _nbytes(tree: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(tree) if isinstance(t, torch.Tensor))


class MemoryTraffic(TorchDispatchMode):
    """Bytes read + written by each memory-bound aten operator (views and compute ops excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not func.is_view and name not in COMPUTE_OPS:
            self.bytes[name] += _nbytes((args, kwargs)) + _nbytes(out)
            self.calls[name] += 1
        return out


def trace(step: Callable[[], None]) -> tuple[int, dict[str, int], dict[str, int]]:
    """Run ``step()`` under the FLOP counter and :class:`MemoryTraffic`: (FLOPs, bytes by op, calls)."""
    with FlopCounterMode(display=False) as flops, MemoryTraffic() as traffic:
        step()
    return int(flops.get_total_flops()), dict(traffic.bytes), dict(traffic.calls)


def step_time_bound(flops: float, nbytes: float, peak: float, bandwidth: float, eta: float) -> float:
    """Seconds: ``flops / (eta * peak) + nbytes / bandwidth`` (kernels run one after another)."""
    return flops / (eta * peak) + nbytes / bandwidth


def backbone_roofline(backbone: str, shape: tuple[int, int, int], peak: float, bandwidth: float,
                      etas: list[float], volumes: int = 2) -> dict[str, Any]:
    """Per-volume FLOPs and bytes of one forward + backward of ``backbone`` + head, and the bounds."""
    with torch.device("meta"):
        method = build_method(backbone, stem_space_to_depth=False).to(torch.bfloat16)
    x = torch.empty(volumes, 1, *shape, device="meta", dtype=torch.bfloat16)

    def step() -> None:
        method.head(method.backbone(x)).float().pow(2).sum().backward()

    flops, by_op, calls = trace(step)
    per_vol_flops, per_vol_bytes = flops / volumes, sum(by_op.values()) / volumes
    relu_bytes = sum(v for k, v in by_op.items() if k in RELU_OPS) / volumes
    out: dict[str, Any] = {
        "gflop_per_volume": round(per_vol_flops / 1e9, 2),
        "memory_bound_gb_per_volume": round(per_vol_bytes / 1e9, 3),
        "arithmetic_intensity_flop_per_byte": round(per_vol_flops / per_vol_bytes, 1),
        "bytes_by_op_mb_per_volume": {
            k: {"mb": round(v / volumes / 1e6, 1), "calls": calls[k]}
            for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]) if v / volumes >= 1e5},
        "bounds": {},
    }
    for scenario, nbytes in (("eager", per_vol_bytes), ("fused_bn_relu", per_vol_bytes - relu_bytes)):
        for eta in etas:
            t = step_time_bound(per_vol_flops, nbytes, peak, bandwidth, eta)
            out["bounds"][f"{scenario}@eta={eta}"] = {
                "vol_per_s": round(1 / t), "mfu": round(per_vol_flops / t / peak, 3),
                "memory_share": round(nbytes / bandwidth / t, 3)}
    return out


def measured_figures(path: Path, backbones: list[str]) -> dict[str, dict[str, float]]:
    """Per-volume milliseconds of medssl's step and of the y-aware views from a ``gpu_bench`` summary."""
    items = json.loads(path.read_text())["items"]
    views = items.get("gpu_views", {}).get("yaware", {}).get("vol_per_s")
    out = {}
    for name in backbones:
        step = items.get(f"train/{name}", {}).get("medssl", {}).get("vol_per_s")
        if step:
            out[name] = {"step_ms_per_volume": 1e3 / step, "vol_per_s": step,
                         **({"views_ms_per_volume": 1e3 / views} if views else {})}
    return out


def plot_time_budget(summary: dict[str, Any], path: Path, target_mfu: float = 0.40) -> None:
    """Per volume and backbone: the bound's parts (convolutions at ``eta``, memory-bound operators at
    full bandwidth, the measured views) above the measured step; a dashed line at ``target_mfu``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak, bw, eta = summary["bf16_peak_tflops"] * 1e12, summary["hbm_tb_per_s"] * 1e12, summary["conv_efficiency"]
    names = list(summary["backbones"])
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.9 * len(names) + 1.2), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        b = summary["backbones"][name]
        flops, nbytes = b["gflop_per_volume"] * 1e9, b["memory_bound_gb_per_volume"] * 1e9
        measured = b.get("measured", {})
        parts = [(f"convolutions at {eta:.0%} of peak", 1e3 * flops / (eta * peak), "tab:blue"),
                 ("memory-bound ops at full bandwidth", 1e3 * nbytes / bw, "tab:orange")]
        if "views_ms_per_volume" in measured:
            parts.append((f"views (measured, {summary['measured_from']})", measured["views_ms_per_volume"],
                          "tab:green"))
        left = 0.0
        for label, ms, color in parts:
            ax.barh(1, ms, left=left, color=color, label=label)
            left += ms
        if "step_ms_per_volume" in measured:
            ax.barh(0, measured["step_ms_per_volume"], color="tab:gray", label="measured step")
        target = 1e3 * flops / (target_mfu * peak)
        ax.axvline(target, color="k", linestyle="--", label=f"{target_mfu:.0%} MFU")
        ax.set_yticks([0, 1], ["measured", "bound"])
        ax.set_title(f"{name}: {b['gflop_per_volume']:.0f} GFLOP and {b['memory_bound_gb_per_volume']:.2f} GB "
                     "per volume", fontsize=10)
        ax.set_xlabel("ms per volume (forward + backward)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"Where a training step's time goes, {summary['card']}", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18_3d", "densenet121_3d"])
    ap.add_argument("--shape", nargs=3, type=int, default=[121, 145, 121])
    ap.add_argument("--card", default="NVIDIA H100 80GB HBM3", help="names the peak and bandwidth")
    ap.add_argument("--conv-efficiency", type=float, default=0.47,
                    help="fraction of the bf16 peak the convolutions reach (measured: 0.45-0.47)")
    ap.add_argument("--out", type=Path, default=RESULTS / "roofline.json")
    ap.add_argument("--measured", type=Path, default=RESULTS / "gpu_h100_merged.json",
                    help="gpu_bench summary whose step and views figures are drawn next to the bound")
    ap.add_argument("--plot", type=Path, default=None, help="PNG (default: next to --out)")
    args = ap.parse_args(argv)
    peak, bandwidth = card_figure(BF16_PEAK_FLOPS, args.card), card_figure(HBM_BYTES_PER_S, args.card)
    if peak is None or bandwidth is None:
        ap.error(f"no bf16 peak or HBM bandwidth for card {args.card!r} (bench_common.py tables)")
    etas = sorted({1.0, args.conv_efficiency}, reverse=True)
    summary = {"card": args.card, "bf16_peak_tflops": peak / 1e12, "hbm_tb_per_s": bandwidth / 1e12,
               "shape": args.shape, "conv_efficiency": args.conv_efficiency,
               "command": "python benchmarks/roofline.py " + " ".join(argv or sys.argv[1:]),
               "backbones": {}}
    for name in args.backbones:
        summary["backbones"][name] = backbone_roofline(name, tuple(args.shape), peak, bandwidth, etas)
        bounds = summary["backbones"][name]["bounds"]
        print(name, {k: (v["vol_per_s"], v["mfu"]) for k, v in bounds.items()}, flush=True)
    if args.measured.is_file():
        for name, figures in measured_figures(args.measured, args.backbones).items():
            summary["backbones"][name]["measured"] = {k: round(v, 4) for k, v in figures.items()}
        summary["measured_from"] = args.measured.name
    write_json(args.out, summary)
    plot_time_budget(summary, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
