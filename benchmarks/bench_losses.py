"""Time each contrastive loss (and kernel) forward + backward for N = 32..1024, d = 128.

Writes ``benchmarks/results/losses_<device>.json`` (machine, versions, milliseconds per call).
With ``--step-batch B`` it also times one ResNet-18-3D training step (forward + backward, two views of
B volumes of ``--step-shape``, bf16 autocast on CUDA) and reports the loss's share of that step.

    python benchmarks/bench_losses.py --device cpu --overwrite
    python benchmarks/bench_losses.py --device cuda --step-batch 64 --overwrite
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from medssl.losses import build_loss
from medssl.utils.io import ensure_writable, write_json
from medssl.utils.repro import environment_info

CONFIGS: dict[str, dict[str, Any]] = {
    "infonce": {"name": "infonce"},
    "dcl": {"name": "dcl"},
    "supcon": {"name": "supcon"},
    "eps_supinfonce": {"name": "eps_supinfonce", "epsilon": 0.25},
    "eps_supcon": {"name": "eps_supcon", "epsilon": 0.25},
    "yaware_rbf": {"name": "yaware", "kernel": "rbf", "sigma": 5.0},
    "yaware_rbf_col": {
        "name": "yaware",
        "kernel": "rbf",
        "sigma": 5.0,
        "normalize": "col",
    },
    "yaware_gaussian": {"name": "yaware", "kernel": "gaussian", "sigma": 5.0},
    "yaware_cauchy": {"name": "yaware", "kernel": "cauchy", "sigma": 0.1},
    "yaware_dirac": {"name": "yaware", "kernel": "dirac"},
    "thr_paper": {"name": "thr", "sigma": 2.0},
    "thr_code": {"name": "thr", "sigma": 2.0, "variant": "code"},
    "exp_paper": {"name": "exp", "sigma": 2.0},
    "exp_code": {
        "name": "exp",
        "sigma": 2.0,
        "variant": "code",
        "base_temperature": 0.07,
    },
    "fairkl_paper_rbf": {"name": "fairkl", "kernel": "rbf", "sigma": 2.0},
    "fairkl_code": {"name": "fairkl", "mode": "code"},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_ms(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Fastest wall time of ``fn`` in ms after one warm-up call (timeit's advice: the minimum is the
    least disturbed by other processes on a shared machine)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def time_loss(
    spec: dict[str, Any], n: int, dim: int, device: torch.device, repeats: int
) -> float:
    kw = {k: v for k, v in spec.items() if k != "name"}
    loss = build_loss(spec["name"], **kw)
    g = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, dim, generator=g).to(device).requires_grad_(True)
    z2 = torch.randn(n, dim, generator=g).to(device).requires_grad_(True)
    age = (20 + 60 * torch.rand(n, generator=g)).round().to(device)
    site = torch.randint(0, 10, (n,), generator=g).to(device)
    y = (
        age
        if spec["name"] not in ("supcon", "eps_supinfonce", "eps_supcon", "fairkl")
        or "kernel" in spec
        else site
    )

    def step() -> None:
        z1.grad = z2.grad = None
        loss(z1, z2, y, site).backward()

    return best_ms(step, device, repeats)


def time_resnet_step(
    batch: int, shape: list[int], device: torch.device, repeats: int
) -> float:
    """One training step of resnet18_3d + MLP head on two views of ``batch`` volumes (no loss)."""
    import medssl.models  # noqa: F401  (registers the backbones and heads)
    from medssl.registry import BACKBONES, HEADS

    net = BACKBONES.build("resnet18_3d", in_channels=1).to(device)
    head = HEADS.build(
        "mlp", in_dim=net.num_features, hidden_dims=[512], out_dim=128
    ).to(device)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(2 * batch, 1, *shape, device=device)
    amp = device.type == "cuda"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            z = head(net(x))
        z.float().square().mean().backward()
        opt.step()

    return best_ms(step, device, repeats)


def step_share(
    args: argparse.Namespace, device: torch.device, figures: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The ResNet-18-3D step time and each loss's share of it (in percent) at ``N = step_batch``."""
    try:
        step_ms = time_resnet_step(
            args.step_batch, args.step_shape, device, args.repeats
        )
    except torch.OutOfMemoryError as err:
        return {"batch": args.step_batch, "error": str(err).splitlines()[0]}
    n = str(args.step_batch)
    share = {k: round(100 * v[n] / step_ms, 4) for k, v in figures.items() if n in v}
    return {
        "batch": args.step_batch,
        "shape": args.step_shape,
        "ms": round(step_ms, 2),
        "loss_share_percent": share,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024]
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--losses", nargs="+", default=list(CONFIGS), choices=list(CONFIGS)
    )
    parser.add_argument(
        "--step-batch",
        type=int,
        default=0,
        help="also time a ResNet-18-3D step (0 = off)",
    )
    parser.add_argument("--step-shape", type=int, nargs=3, default=[121, 145, 121])
    parser.add_argument(
        "--out", default=None, help="default: benchmarks/results/losses_<device>.json"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(
        args.out or Path(__file__).parent / "results" / f"losses_{args.device}.json"
    )
    ensure_writable(out, args.overwrite)
    figures: dict[str, dict[str, float]] = {}
    for key in args.losses:
        figures[key] = {}
        for n in args.sizes:
            figures[key][str(n)] = round(
                time_loss(CONFIGS[key], n, args.dim, device, args.repeats), 4
            )
        print(key, figures[key], flush=True)
    result: dict[str, Any] = {
        "what": "fastest of `repeats` timed calls (ms) of one forward+backward of the loss on (N, d) float32 "
                "embeddings",
        "device": str(device),
        "dim": args.dim,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "environment": environment_info(),
        "configs": {k: CONFIGS[k] for k in args.losses},
        "ms": figures,
    }
    if args.step_batch:
        result["resnet18_3d_step"] = step_share(args, device, figures)
        print("resnet18_3d step", result["resnet18_3d_step"], flush=True)
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
