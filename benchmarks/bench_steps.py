"""Training steps to time: medssl's engine step and a plain fp32 step of the published code's kind.

``medssl_step`` mirrors one iteration of ``medssl.engine.train.train_loop`` (copy the batch to the device
non-blocking from pinned memory, channels-last, make two views with the batched augmenter on the device,
``method(batch, views)`` under bf16 autocast, backward, fused Adam); it is re-stated here, not called,
so that it can be timed step by step without datasets, checkpoints or logging.

``baseline_step`` is the authors' kind of loop: fp32 (PyTorch defaults, so cuDNN may use TF32), no
channels-last, ``cudnn.benchmark`` off, plain Adam, views already augmented on the CPU and copied from
pageable memory, ``loss.item()`` every step. The CPU augmentation itself is timed separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

import medssl.methods  # noqa: F401  (registers the siamese method)
from medssl.engine.optim import build_optimizer
from medssl.pipelines.common import build_backbone, build_head, build_objective
from medssl.registry import METHODS, VIEWS

HEAD = {"name": "mlp", "hidden_dims": [512], "out_dim": 128}
LOSS = {"name": "yaware", "temperature": 0.1, "sigma": 5.0, "kernel": "rbf", "label": "age"}
CL = torch.channels_last_3d


@dataclass
class Step:
    """A ready-to-call training step and what was built for it."""

    run: Callable[[], torch.Tensor]
    method: nn.Module
    batch: dict[str, torch.Tensor]
    views: list[torch.Tensor]
    notes: dict[str, Any]


def build_method(backbone: str, checkpointing: bool = False, loss: dict[str, Any] | None = None) -> nn.Module:
    """The siamese method of the pretrain pipeline: backbone -> MLP head 512-128 -> y-aware loss."""
    net = build_backbone({"name": backbone}, checkpointing)
    head = build_head(HEAD, net.num_features)
    objective = build_objective(loss or LOSS, {"name": "none"})
    return METHODS.get("siamese")(backbone=net, head=head, loss=objective, label="age")


def fake_meta(n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Ages in [6, 86) years and 60 site codes, like OpenBHB's training split."""
    return {"age": (torch.rand(n) * 80 + 6).to(device), "site": torch.randint(0, 60, (n,)).to(device)}


def augmenter(device: torch.device, preset: str = "yaware") -> nn.Module | None:
    """The batched view augmenter, or None (identical views) when ``preset`` is not registered."""
    return VIEWS.build(preset).to(device) if preset in VIEWS else None


def medssl_step(
    backbone: str, subjects: int, shape: tuple[int, int, int], device: torch.device,
    checkpointing: bool = False, on_device: bool = False,
) -> Step:
    """medssl's step at ``subjects`` subjects x 2 views of ``(1, *shape)`` volumes (bf16 autocast).

    ``on_device=True`` keeps the batch on the device (no host copy), for memory searches at large batch.
    """
    method = build_method(backbone, checkpointing).to(device).to(memory_format=CL)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, "adam", 1e-4, 5e-5, fused=device.type == "cuda")
    aug = augmenter(device)
    host = torch.randn(subjects, 1, *shape, device=device if on_device else "cpu")
    if device.type == "cuda" and not on_device:
        host = host.pin_memory()
    meta = fake_meta(subjects, device)
    amp = torch.bfloat16
    state: dict[str, Any] = {}

    def run() -> torch.Tensor:
        x = host.to(device, non_blocking=True).contiguous(memory_format=CL)
        batch = {"image": x, **meta}
        views = [aug(x) for _ in range(2)] if aug is not None else [x, x]
        with torch.autocast(device.type, dtype=amp):
            out = method(batch, views)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        state.update(batch=batch, views=views)
        return out["loss"]

    run()  # first call builds the optimizer state and fixes the batch used by count_flops
    notes = {"views": "yaware (batched, on device)" if aug is not None else "identical (yaware not registered)",
             "checkpointing": bool(getattr(method.backbone, "activation_checkpointing", False)),
             "precision": "bf16 autocast", "channels_last_3d": True, "fused_adam": device.type == "cuda"}
    return Step(run, method, state["batch"], state["views"], notes)


def baseline_step(backbone: str, subjects: int, shape: tuple[int, int, int], device: torch.device) -> Step:
    """The plain fp32 step on views that the CPU already augmented (pageable host memory)."""
    method = build_method(backbone).to(device)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-4, weight_decay=5e-5)
    host_views = [torch.randn(subjects, 1, *shape) for _ in range(2)]
    meta = fake_meta(subjects, device)

    def run() -> torch.Tensor:
        views = [v.to(device) for v in host_views]
        out = method(meta, views)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        out["loss"].item()
        return out["loss"]

    notes = {"precision": "fp32 (PyTorch defaults; cuDNN may use TF32)", "channels_last_3d": False,
             "cudnn_benchmark": False, "adam": "default (foreach)", "copy": "pageable, blocking"}
    return Step(run, method, meta, host_views, notes)


def count_flops(method: nn.Module, batch: dict[str, torch.Tensor], views: list[torch.Tensor]) -> int:
    """FLOPs of one forward + backward of ``method`` (``torch.utils.flop_counter``: 2 per multiply-add,
    convolutions and matmuls only), without activation recomputation."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone = method.backbone
    saved = getattr(backbone, "activation_checkpointing", None)
    if saved is not None:
        backbone.activation_checkpointing = False
    device_type = views[0].device.type
    try:
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = method(batch, [v.detach() for v in views])
            out["loss"].backward()
    finally:
        if saved is not None:
            backbone.activation_checkpointing = saved
        method.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
