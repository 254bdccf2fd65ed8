"""Gradient cache (Gao et al. 2021): contrastive batches larger than the activation memory.

"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup" (Gao, Zhang, Han, Callan,
2021). Split the ``B`` subjects of a step into chunks ``c`` of ``chunk_subjects`` contiguous subjects,
each holding all views of its subjects (like one DDP rank). With ``z_c = embed(views[c])`` and the loss
``L(z_1, ..., z_C)`` computed on every embedding of the batch, the chain rule gives
``dL/dθ = Σ_c (dL/dz_c)ᵀ dz_c/dθ``, which one step computes in three passes:

1. ``z_c = embed(views[c])`` for every chunk **without** autograd (no activation is kept);
2. ``L = embedding_loss(batch, z)`` on the whole batch of detached ``z`` (``requires_grad``), then
   ``backward``: the cache ``g_c = dL/dz_c``, a ``(b_c, d)`` tensor per view;
3. for every chunk, ``embed(views[c])`` again **with** autograd and ``z_c.backward(g_c)``, which
   accumulates ``(dL/dz_c)ᵀ dz_c/dθ`` into the parameters' ``.grad``.

Memory: the activations of one chunk (plus the ``B x d`` embeddings) instead of the whole batch, so the
batch size is bounded by compute, not memory; the loss still sees every negative of the batch.
Compute: one extra forward of the encoder (about +1/3 of a step whose backward costs two forwards).
``views`` is either the list of the ``V`` views of the whole batch, or a function ``make_views(sl)``
returning the views of the subjects ``sl`` only (a :data:`ViewMaker`): then the views of one chunk
exist at a time and the batch costs only its images, at the price of one more augmentation pass per
chunk (the views of pass 1 are made again in pass 3, the RNG state restored so they are bit-identical).
Its measured memory and speed are in benchmarks/README.md ("Design figures"): activation
checkpointing on top of it only costs time, so use one or the other.

BatchNorm: every forward normalises with the statistics of its chunk (both views of ``b_c``
subjects), which is what BatchNorm sees on each GPU under DDP without SyncBatchNorm: a chunk is a
simulated rank. Running statistics are updated once per chunk, in pass 1; pass 3 runs under
``_bn_stats_frozen`` (momentum 0), so they are not updated twice. Random ops inside ``embed``
(dropout), and ``make_views``, replay the draws of pass 1 in pass 3 (the CPU and device RNG states
saved per chunk before its views are made, as ``torch.utils.checkpoint`` does).

Exact equivalence: after the step, the ``.grad`` of every parameter equals (up to float summation
order) the gradient of ``embedding_loss(batch, cat_c embed(views[c]))`` computed in one graph, the
chunks forwarded separately. Without BatchNorm, or with ``chunk_subjects >= B``, that is the gradient
of the plain ``training_step(batch, views)``. Under DDP (world > 1) the gradients are averaged over
ranks here (the method is not DDP-wrapped, DDP's hooks fire only through its forward); the losses
gather embeddings across ranks with a ``world_size``-scaled loss (``medssl.utils.distributed``), so
the average equals the gradient on the global batch.

Mixed precision: ``autocast`` (a context factory) wraps the forward passes and the loss only; the
backward passes run outside it, as PyTorch recommends. Activation checkpointing composes: its
recompute restores the autocast state and freezes BatchNorm statistics itself. For fp16, ``scale``
is ``GradScaler.scale``: the cached ``dL/dz`` and hence every parameter gradient carry the scale
(an overflow shows as inf in the gradients, and the scaler skips the step as usual).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ContextManager

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import get_device_states, set_device_states

from medssl.utils.distributed import get_world_size
from medssl.methods.base import Method
from medssl.models.backbones import _bn_stats_frozen

RngState = tuple[torch.Tensor, list[int], list[torch.Tensor]]
ViewMaker = Callable[[slice], list[torch.Tensor]]
"""``make_views(sl)``: the ``V`` views ``(b, C, D, H, W)`` of the subjects ``sl`` of the batch, on the
batch's device, drawn from the global torch RNG (the batched augmenter on ``batch["image"][sl]``)."""


def _unscaled(loss: torch.Tensor) -> torch.Tensor:
    return loss


def _rng_state(tensors: list[torch.Tensor]) -> RngState:
    """The CPU RNG state and that of every device holding one of ``tensors``."""
    return (torch.get_rng_state(), *get_device_states(tensors))


def _set_rng_state(state: RngState, device_type: str) -> None:
    cpu, devices, device_states = state
    torch.set_rng_state(cpu)
    set_device_states(devices, device_states, device_type=device_type)


def average_gradients(module: nn.Module) -> None:
    """All-reduce (mean over ranks) the ``.grad`` of ``module``'s parameters, in one flat buffer.

    Parameters without a gradient are skipped; every rank runs the same code, so the set agrees.
    A no-op in a single process.
    """
    world = get_world_size()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def _view_source(
    batch: dict[str, Any], views: list[torch.Tensor] | ViewMaker
) -> tuple[int, ViewMaker, list[torch.Tensor]]:
    """``(B, chunk views as a function of the slice, tensors whose devices' RNG states to save)``.

    The list is sliced; a :data:`ViewMaker` runs without autograd, and its RNG is that of the devices
    of ``batch``'s tensors (the views do not exist yet).
    """
    if not callable(views):
        return views[0].shape[0], lambda sl: [v[sl] for v in views], views
    image = batch.get("image")
    if not isinstance(image, torch.Tensor):
        raise ValueError("grad_cache_step: views given as make_views(slice) need batch['image'], a "
                         "tensor (B, C, D, H, W) that gives the number of subjects B; batch has keys "
                         f"{sorted(batch)}")
    make_views = views

    def make(sl: slice) -> list[torch.Tensor]:
        with torch.no_grad():
            return make_views(sl)

    return image.shape[0], make, [t for t in batch.values() if isinstance(t, torch.Tensor)]


def _check_rng_covers(views: list[torch.Tensor], state: RngState, device_type: str) -> None:
    """ValueError unless every view lies on the CPU or on a device whose RNG state was saved."""
    for v in views:
        if v.device.type != "cpu" and (v.device.type != device_type or v.get_device() not in state[1]):
            raise ValueError(f"grad_cache_step: make_views returned a view on {v.device}, but the batch's "
                             "tensors are not there, so its RNG was not saved and pass 3 could remake "
                             "different views; move the batch to the device the views are made on")


def grad_cache_step(
    method: Method,
    batch: dict[str, Any],
    views: list[torch.Tensor] | ViewMaker,
    chunk_subjects: int,
    scale: Callable[[torch.Tensor], torch.Tensor] = _unscaled,
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any]:
    """One contrastive step, encoder run chunk by chunk; accumulates into ``.grad`` (no optimiser step).

    Args:
        method: a ``Method`` overriding ``embed`` and ``embedding_loss`` (not DDP-wrapped).
        batch: the whole batch (labels for the loss), on the device.
        views: ``V`` tensors ``(B, C, D, H, W)``, the views of the ``B`` subjects; or a
            :data:`ViewMaker` called once per chunk in pass 1 and again in pass 3 (``B`` is then
            ``batch["image"].shape[0]``; ValueError without it).
        chunk_subjects: subjects per encoder chunk (the last chunk may be smaller).
        scale: applied to the loss before its backward (``GradScaler.scale`` for fp16).
        autocast: factory of the context the forward passes run in (``torch.autocast``).

    Returns:
        ``embedding_loss``'s dict, tensors detached. Gradients are averaged over ranks under DDP.
    """
    if chunk_subjects < 1:
        raise ValueError(f"chunk_subjects must be >= 1, got {chunk_subjects}")
    n, chunk_views, rng_source = _view_source(batch, views)
    chunks = [slice(i, min(i + chunk_subjects, n)) for i in range(0, n, chunk_subjects)]
    device_type = next((t.device.type for t in rng_source if t.device.type != "cpu"), "cpu")

    rng_states, parts = [], []
    with torch.no_grad():  # pass 1: embeddings only, BN running stats updated once
        for sl in chunks:
            rng_states.append(_rng_state(rng_source))
            x = chunk_views(sl)
            _check_rng_covers(x, rng_states[-1], device_type)
            with autocast():
                parts.append(method.embed(x))
            del x  # a ViewMaker's views exist for one chunk at a time
    embeddings = [torch.cat(per_view).requires_grad_() for per_view in zip(*parts)]

    with autocast():  # pass 2: the loss on the whole batch, cache dL/dz
        out = method.embedding_loss(batch, embeddings)
    scale(out["loss"]).backward()
    cache = [e.grad for e in embeddings]

    for sl, rng in zip(chunks, rng_states):  # pass 3: re-embed each chunk with autograd
        _set_rng_state(rng, device_type)
        x = chunk_views(sl)
        with autocast(), _bn_stats_frozen(method):
            z = method.embed(x)
        del x  # the graph keeps what backward needs; freed before the next chunk's views are made
        used = [(z_v, g[sl]) for z_v, g in zip(z, cache) if g is not None]
        torch.autograd.backward([z_v for z_v, _ in used], [g for _, g in used])
    average_gradients(method)
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
