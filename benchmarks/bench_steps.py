"""Training steps to time: medssl's engine step and a plain fp32 step of the published code's kind.

``medssl_step`` mirrors one iteration of ``medssl.engine.train.train_loop`` (copy the batch to the device
non-blocking from pinned memory, channels-last, make two views with the batched augmenter on the device,
``method(batch, views)`` under bf16 autocast, backward, fused Adam); it is re-stated here, not called,
so that it can be timed step by step without datasets, checkpoints or logging. A :class:`Variant` picks
the options that are measured against each other: memory format, the space-to-depth stem,
``torch.compile`` of the backbone, and the gradient cache (``train.grad_cache_chunk``).

``baseline_step`` is the authors' kind of loop: fp32 (PyTorch defaults, so cuDNN may use TF32), no
channels-last, ``cudnn.benchmark`` off, plain Adam, views already augmented on the CPU and copied from
pageable memory, ``loss.item()`` every step. The CPU augmentation itself is timed separately.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

import medssl.methods  # noqa: F401  (registers the siamese method)
from medssl.config import ObjectiveConfig
from medssl.engine.grad_cache import grad_cache_step
from medssl.engine.optim import build_optimizer
from medssl.methods import build_method as build_method_by_name
from medssl.models import build_backbone, build_head
from medssl.pipelines.common import build_objective
from medssl.registry import BACKBONES, VIEWS

HEAD = {"name": "mlp", "hidden_dims": [512], "out_dim": 128}
LOSS = {"name": "yaware", "temperature": 0.1, "sigma": 5.0, "kernel": "rbf"}  # on age (label= below)
CL = torch.channels_last_3d
AMP_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Variant:
    """Options of medssl's step that the benchmark compares (the engine's config keys in brackets)."""

    channels_last: bool = True  # train.channels_last
    stem_space_to_depth: bool = True  # model.stem_space_to_depth (the encoders' default)
    compile: bool = False  # train.compile
    grad_cache_chunk: int | None = None  # train.grad_cache_chunk

    def label(self) -> str:
        parts = ["cl" if self.channels_last else "ncdhw", "s2d" if self.stem_space_to_depth else "stem"]
        parts += ["compile"] if self.compile else []
        parts += [f"gc{self.grad_cache_chunk}"] if self.grad_cache_chunk else []
        return "+".join(parts)


@dataclass
class Step:
    """A ready-to-call training step and what was built for it."""

    run: Callable[[], torch.Tensor]
    method: nn.Module
    batch: dict[str, torch.Tensor]  # medssl_step: the first call's first two subjects only
    views: list[torch.Tensor]
    notes: dict[str, Any]


def build_method(
    backbone: str, checkpointing: bool = False, loss: dict[str, Any] | None = None,
    stem_space_to_depth: bool = True,
) -> nn.Module:
    """The siamese method of the pretrain pipeline: backbone -> MLP head 512-128 -> y-aware loss."""
    kwargs: dict[str, Any] = {}
    if "stem_space_to_depth" in inspect.signature(BACKBONES.get(backbone)).parameters:
        kwargs["stem_space_to_depth"] = stem_space_to_depth
    net = build_backbone(backbone, activation_checkpointing=checkpointing, **kwargs)
    head = build_head(HEAD["name"], net.num_features, **{k: v for k, v in HEAD.items() if k != "name"})
    objective = build_objective(loss or LOSS, {"name": "none"}, ObjectiveConfig(label="age"))
    return build_method_by_name("siamese", net, head, objective, label="age")


def fake_meta(n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Ages in [6, 86) years and 60 site codes, like OpenBHB's training split."""
    return {"age": (torch.rand(n) * 80 + 6).to(device), "site": torch.randint(0, 60, (n,)).to(device)}


def augmenter(device: torch.device, preset: str = "yaware") -> nn.Module | None:
    """The batched view augmenter, or None (identical views) when ``preset`` is not registered."""
    return VIEWS.build(preset).to(device) if preset in VIEWS else None


def medssl_step(
    backbone: str, subjects: int, shape: tuple[int, int, int], device: torch.device,
    checkpointing: bool = False, on_device: bool = False, variant: Variant = Variant(),
    views_per_chunk: bool = False, amp: torch.dtype | None = torch.bfloat16, fused_adam: bool | None = None,
) -> Step:
    """medssl's step at ``subjects`` subjects x 2 views of ``(1, *shape)`` volumes (``amp`` autocast,
    None = fp32; fused Adam on CUDA unless ``fused_adam`` says otherwise).

    ``on_device=True`` keeps the batch on the device (no host copy), for memory searches at large batch.
    ``views_per_chunk=True`` (gradient cache only) hands ``grad_cache_step`` a function that makes the
    views of one chunk (``grad_cache.ViewMaker``), so the step holds the images, not the batch's views.
    Between calls nothing of a step's batch is kept but two subjects (``Step.batch``/``Step.views``,
    for ``count_flops``), so peak memory counts one step's batch, as in the train loop.
    """
    v = variant
    if views_per_chunk and not v.grad_cache_chunk:
        raise ValueError("medssl_step: views_per_chunk needs a gradient-cache variant (grad_cache_chunk)")
    fmt = CL if v.channels_last else torch.contiguous_format
    method = build_method(backbone, checkpointing, stem_space_to_depth=v.stem_space_to_depth)
    method = method.to(device).to(memory_format=fmt)
    if v.compile:
        method.backbone.compile(backend="eager" if device.type == "cpu" else "inductor")
    params = [p for p in method.parameters() if p.requires_grad]
    fused = device.type == "cuda" if fused_adam is None else fused_adam
    optimizer = build_optimizer(params, "adam", 1e-4, 5e-5, fused=fused)
    aug = augmenter(device)
    host = torch.randn(subjects, 1, *shape, device=device if on_device else "cpu")
    if device.type == "cuda" and not on_device:
        host = host.pin_memory()
    meta = fake_meta(subjects, device)
    first: dict[str, Any] = {}

    def run() -> torch.Tensor:
        x = host.to(device, non_blocking=True).contiguous(memory_format=fmt)
        batch = {"image": x, **meta}

        def make_views(sl: slice) -> list[torch.Tensor]:
            return [aug(x[sl]) for _ in range(2)] if aug is not None else [x[sl], x[sl]]

        views = make_views if views_per_chunk else make_views(slice(None))
        optimizer.zero_grad(set_to_none=True)
        if v.grad_cache_chunk:
            out = grad_cache_step(method, batch, views, v.grad_cache_chunk,
                                  autocast=lambda: torch.autocast(device.type, dtype=amp, enabled=amp is not None))
        else:
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = method(batch, views)
            out["loss"].backward()
        optimizer.step()
        if not first:  # two subjects only: a whole batch kept here would count in the next step's peak
            first.update(batch={k: t[:2].clone() for k, t in batch.items()},
                         views=[w[:2].clone() for w in (make_views(slice(0, 2)) if views_per_chunk else views)])
        return out["loss"]

    run()  # first call builds the optimizer state and fixes the two subjects used by count_flops
    notes = {"views": "yaware (batched, on device)" if aug is not None else "identical (yaware not registered)",
             "views_made": "per chunk (grad_cache ViewMaker)" if views_per_chunk else "whole batch",
             "checkpointing": bool(getattr(method.backbone, "activation_checkpointing", False)),
             "precision": f"{AMP_NAMES[amp]} autocast" if amp else "fp32", "fused_adam": fused,
             "variant": v.label(),
             **asdict(v)}
    return Step(run, method, first["batch"], first["views"], notes)


def baseline_step(backbone: str, subjects: int, shape: tuple[int, int, int], device: torch.device) -> Step:
    """The plain fp32 step on views that the CPU already augmented (pageable host memory); the stem is
    the plain strided convolution, as in the published code."""
    method = build_method(backbone, stem_space_to_depth=False).to(device)
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
    convolutions and matmuls only): the model's own FLOPs, so without activation recomputation and
    with the plain stem (the space-to-depth stem does 1.49x the stem's multiply-adds)."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone = method.backbone
    flags = {k: getattr(backbone, k) for k in ("activation_checkpointing", "stem_space_to_depth")
             if hasattr(backbone, k)}
    for key in flags:
        setattr(backbone, key, False)
    device_type = views[0].device.type
    try:
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = method(batch, [v.detach() for v in views])
            out["loss"].backward()
    finally:
        for key, value in flags.items():
            setattr(backbone, key, value)
        method.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
