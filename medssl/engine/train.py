"""The training loop shared by pretraining and fine-tuning: read it top to bottom.

One optimiser step = fetch a batch -> move it to the device (on CUDA the copy was issued during the
previous step, on a side stream: :mod:`medssl.engine.prefetch`) -> make the views (batched, on device)
-> ``method(batch, views)`` under autocast -> non-finite guard (the step's one host sync, which also
reads the scalars to log, so the host can queue the next step while the GPU runs this one's backward)
-> backward (grad scaler for fp16)
-> optional clipping -> optimiser and scheduler step -> ``method.on_step_end``. Every random draw of a
step comes from a generator seeded by ``(seed, step, rank)``, the data order from ``(seed, epoch)``, and
a CPU-side transform's draws for one item from ``(seed, epoch, index)`` (:mod:`medssl.engine.sampling`),
so a run killed at any point and resumed from ``checkpoints/last.pt`` ends with the same weights as an
uninterrupted one, with any number of DataLoader workers (checked on CPU in the tests). The workers
persist across epochs. A cohort held on the device (``data.cache: device``) feeds the same rows with no
workers and no host copy (:mod:`medssl.engine.feed`).

Opt-in variants of the step:

- ``train.grad_cache_chunk = b``: the gradient cache (:mod:`medssl.engine.grad_cache`) replaces the
  forward + backward: the encoder runs on ``b`` subjects at a time (activation memory of ``b``
  subjects, one extra forward; views made on the device are made per chunk, so the batch's views are
  never all held), the loss sees the whole batch, BatchNorm sees one chunk as it would
  see one DDP rank. Needs a method with ``embed`` / ``embedding_loss``. Under DDP the method is not
  wrapped: parameters are broadcast from rank 0 once and gradients averaged after each step.
- ``train.compile = true``: ``method.backbone.compile()`` (``torch.compile`` in place, default
  inductor backend; state-dict keys unchanged, so checkpoints and ``encoder.pt`` are unaffected).
  The first steps pay the compilation (benchmarks/README.md); not with activation checkpointing
  (refused: dynamo cannot trace its ``context_fn``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter

from medssl.config import TrainConfig
from medssl.data.device_cache import DeviceCohort
from medssl.engine.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from medssl.engine.feed import batch_feed
from medssl.engine.grad_cache import ViewMaker, grad_cache_step
from medssl.engine.optim import build_optimizer, lr_factor
from medssl.engine.sampling import ResumableSampler
from medssl.errors import ConfigError, MedsslError
from medssl.methods.base import Method
from medssl.utils.device import resolve_device
from medssl.utils.progress import progress_bar, progress_write

Augment = Callable[[torch.Tensor], torch.Tensor]
EpochHook = Callable[[int, nn.Module], dict[str, float]]


class NonFiniteLossError(MedsslError):
    """The loss became NaN or infinite; training stops before the weights are corrupted."""


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per record) and TensorBoard scalars, on rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resume_step: int) -> None:
        self.path, self.enabled, self.writer = run_dir / "metrics.jsonl", enabled, None
        if not enabled:
            return
        if self.path.exists():  # drop records of a killed run that the checkpoint does not cover
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        if tensorboard:
            self.writer = SummaryWriter(str(run_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


CPU_BF16_WARNING = (
    "train.precision=bf16 on the CPU: runs are not repeatable from their seed, and oneDNN's bf16 3-D "
    "convolution weight gradients can be wrong (NaN on feature maps 2 voxels deep); use "
    "train.precision=auto (fp32 on the CPU) unless you are measuring bf16 itself"
)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device`` (None = fp32): ``auto`` is bf16 on CUDA
    and fp32 elsewhere (``TrainConfig.precision`` says why)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 5:
                value = value.contiguous(memory_format=torch.channels_last_3d)
        elif key == "views":
            value = [v.to(device, non_blocking=True) for v in value]
        out[key] = value
    return out


def read_scalars(out: dict[str, Any]) -> dict[str, float]:
    """The one-element tensors of ``out`` as floats, read from the device in one transfer."""
    keys = [k for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
    device = out["loss"].device
    values = torch.stack([out[k].detach().float().reshape(()).to(device) for k in keys]).tolist()
    return dict(zip(keys, values))


def views_of(augment: Augment, images: torch.Tensor, n_views: int,
             subjects: slice = slice(None)) -> list[torch.Tensor]:
    """``n_views`` augmented copies of ``images[subjects]`` ``(b, C, D, H, W)``.

    An identity augmenter (views ``none``) returns the one tensor ``n_views`` times, by which the
    method can tell that the views are identical (``siamese`` then runs its backbone once).
    """
    part = images[subjects]
    return [augment(part) for _ in range(n_views)]


def check_options(method: Method, cfg: TrainConfig) -> int | None:
    """Refuse option combinations the method cannot run; returns the grad-cache chunk (None = off)."""
    if cfg.compile and getattr(method.backbone, "activation_checkpointing", False):
        raise ConfigError(
            "train.compile=true with train.activation_checkpointing=true: torch.compile cannot trace "
            "the checkpointed stages (their BatchNorm-freezing context_fn; torch 2.11-2.13); turn "
            "one of them off (train.grad_cache_chunk saves more memory than checkpointing)"
        )
    chunk = cfg.grad_cache_chunk  # its range is checked by TrainConfig
    if chunk is None:
        return None
    if not method.supports_grad_cache():
        raise ConfigError(
            f"train.grad_cache_chunk={chunk} needs a method that splits its step into embed / "
            f"embedding_loss (e.g. siamese); {type(method).__name__} does not: set "
            "train.grad_cache_chunk: null"
        )
    return chunk


@dataclasses.dataclass
class Optimisation:
    """What a step updates besides the weights: optimiser, lr schedule, fp16 grad scaler; and how the
    forward runs (autocast dtype, None = fp32)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    device: torch.device

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def place(method: Method, cfg: TrainConfig, device: torch.device, world: int, chunk: int | None) -> nn.Module:
    """Move ``method`` to ``device`` (memory format, compilation) and return what the step calls: the
    method, or its DDP wrapper (not with the gradient cache, which averages gradients itself)."""
    method.to(device)
    if cfg.channels_last:
        method.to(memory_format=torch.channels_last_3d)
    if cfg.compile:
        method.backbone.compile()
    if world > 1 and chunk:
        for tensor in method.state_dict().values():  # what DDP's constructor would broadcast
            torch.distributed.broadcast(tensor, src=0)
    elif world > 1:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(method, device_ids=ids)
    return method


def build_optimisation(method: Method, cfg: TrainConfig, device: torch.device, steps_per_epoch: int,
                       total_steps: int) -> Optimisation:
    """Optimiser over the method's parameter groups (e.g. layer-wise lr scales), schedule, scaler."""
    groups = [{"params": [p for p in g["params"] if p.requires_grad], "lr": cfg.lr * g.get("lr_scale", 1.0)}
              for g in method.param_groups()]
    optimizer = build_optimizer(groups, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, steps_per_epoch, total_steps, cfg.schedule, cfg.warmup_epochs, cfg.step_every, cfg.step_gamma))
    amp_dtype = autocast_dtype(cfg.precision, device)
    if amp_dtype == torch.bfloat16 and device.type == "cpu":
        warnings.warn(CPU_BF16_WARNING, stacklevel=3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return Optimisation(optimizer, scheduler, scaler, amp_dtype, device)


def resume(ckpt_path: Path, method: Method, opt: Optimisation, epochs: int) -> tuple[int, int]:
    """``(epoch, step)`` to start from: 0, 0 for a new run, else the checkpoint's (weights, optimiser,
    schedule, scaler and RNG restored); an early-stopped run counts as complete."""
    if not ckpt_path.exists():
        return 0, 0
    ckpt = load_checkpoint(ckpt_path)
    method.load_state_dict(ckpt["method"])
    opt.optimizer.load_state_dict(ckpt["optimizer"])
    opt.scheduler.load_state_dict(ckpt["scheduler"])
    opt.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return (epochs if ckpt.get("stopped") else ckpt["epoch"]), ckpt["step"]


def make_views(batch: dict[str, Any], augment: Augment | None, n_views: int,
               chunk: int | None) -> list[torch.Tensor] | ViewMaker:
    """The step's views: the dataset's own, the image itself (no augmenter), ``n_views`` augmented
    copies, or, with the gradient cache, a maker called per chunk (twice, from the same RNG state), so
    the step holds the images and one chunk's views, not the batch's."""
    if batch.get("views"):
        return batch["views"]
    if augment is None:
        return [batch["image"]]
    if chunk:
        return functools.partial(views_of, augment, batch["image"], n_views)
    return views_of(augment, batch["image"], n_views)


def train_step(model: nn.Module, method: Method, batch: dict[str, Any], views: list[torch.Tensor] | ViewMaker,
               opt: Optimisation, cfg: TrainConfig, chunk: int | None, where: str) -> dict[str, float]:
    """Forward, non-finite guard, backward, clipping and the optimiser, schedule and method updates;
    returns the step's scalars (read from the device in the step's one host sync)."""
    opt.optimizer.zero_grad(set_to_none=True)
    if chunk:  # forward and backward, chunk by chunk (engine/grad_cache.py)
        out = grad_cache_step(method, batch, views, chunk, opt.scaler.scale, opt.autocast)
    else:
        with opt.autocast():
            out = model(batch, views)
    scalars = read_scalars(out)  # the GPU goes on with the backward while the host reads these
    if not math.isfinite(scalars["loss"]):  # before any optimiser step: the weights are intact
        raise NonFiniteLossError(
            f"loss is {scalars['loss']} at {where}: training stopped (lower train.lr, set train.grad_clip, "
            "use train.precision=fp32, or check the data for NaN)."
        )
    if not chunk:
        opt.scaler.scale(out["loss"]).backward()
    if cfg.grad_clip:
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_([p for p in method.parameters() if p.requires_grad], cfg.grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return scalars


def end_of_epoch(method: Method, epoch: int, on_epoch_end: EpochHook | None, rank: int, world: int,
                 device: torch.device) -> tuple[dict[str, float], bool]:
    """The epoch hook's floats (rank 0, method in eval mode) and whether it asks to stop, agreed by every
    rank (they must leave the loop together)."""
    extra: dict[str, float] = {}
    stop = False
    if on_epoch_end is not None and rank == 0:
        method.eval()
        extra = dict(on_epoch_end(epoch, method))
        stop = bool(extra.pop("stop", False))
    if world > 1:
        flag = torch.tensor([float(stop)], device=device)
        torch.distributed.broadcast(flag, src=0)
        stop = bool(flag.item())
    return extra, stop


def train_loop(
    method: Method,
    dataset: Dataset | DeviceCohort,
    augment: Augment | None,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    device: torch.device | None = None,
    rank: int = 0,
    world: int = 1,
    n_views: int = 2,
    on_epoch_end: EpochHook | None = None,
    num_workers: int = 0,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Train ``method`` on ``dataset`` for ``cfg.epochs``; resume from ``run_dir/checkpoints/last.pt``.

    Args:
        method: a :class:`~medssl.methods.base.Method` (``training_step(batch, views) -> {"loss": ...}``,
            ``forward`` aliasing it for DDP, ``on_step_end``, ``param_groups``).
        dataset: map-style dataset of dicts with ``"image"`` (1, D, H, W) (or ready ``"views"``), or a
            ``DeviceCohort`` on ``device`` (``data.cache: device``; :mod:`medssl.engine.feed`).
        augment: batched view augmenter ``(B,1,D,H,W) -> (B,1,D,H,W)`` applied ``n_views`` times on
            the device; None when the dataset already yields ``"views"`` or the method needs none.
        on_epoch_end: called as ``hook(epoch, method)`` after each epoch (1-based, rank 0, method in
            eval mode); its floats are logged under ``epoch/``; a truthy ``"stop"`` ends training
            early (early stopping), after the checkpoint is written.

    Returns:
        A summary: final epoch/step, last loss, mean volumes/s.
    """
    # set-up: device, model, data order, optimisation
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:  # small CPU models can run faster on one thread (benchmarks/README.md)
        torch.set_num_threads(cfg.num_threads)
    device = device or resolve_device(cfg.device)
    chunk = check_options(method, cfg)
    model = place(method, cfg, device, world, chunk)
    sampler = ResumableSampler(len(dataset), cfg.batch_size, cfg.seed, rank, world)
    steps_per_epoch = min(sampler.batches_per_epoch(), cfg.max_steps_per_epoch or math.inf)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={cfg.batch_size} x {world} process(es) is larger than the "
            f"{len(dataset)} training subjects; lower train.batch_size"
        )
    total_steps = cfg.epochs * steps_per_epoch
    opt = build_optimisation(method, cfg, device, steps_per_epoch, total_steps)

    # resume
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    epoch, step = resume(ckpt_path, method, opt, cfg.epochs)
    log = MetricsLog(run_dir, rank == 0, tensorboard, step)
    last: dict[str, float] = {}
    rates: list[float] = []
    # a DataLoader (workers persist across epochs) or a cohort already on the device (data.cache)
    feed = batch_feed(dataset, sampler, functools.partial(to_device, device=device, channels_last=cfg.channels_last),
                      device, num_workers)

    started = time.perf_counter()
    while epoch < cfg.epochs:
        start_batch = step - epoch * steps_per_epoch  # > 0 only when resuming mid-epoch
        sampler.set_epoch(epoch, start_batch)
        method.train()
        bar = progress_bar(total=steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           enabled=rank == 0, leave=False, dynamic_ncols=True)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        # steps: on CUDA the next batch's copy overlaps this step
        for batch in feed(steps_per_epoch - start_batch):
            torch.manual_seed(hash((cfg.seed, step, rank)) % 2**62)
            views = make_views(batch, augment, n_views, chunk)
            where = f"epoch {epoch + 1}, step {step} (the last good checkpoint is {ckpt_path})"
            scalars = train_step(model, method, batch, views, opt, cfg, chunk, where)
            method.on_step_end(step, total_steps)
            step += 1
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value
            t1 = time.perf_counter()
            rates.append(n_views * cfg.batch_size * world / max(t1 - t0, 1e-9))
            t0 = t1
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{opt.lr:.2e}", vol_s=f"{rates[-1]:.1f}")
            bar.update()
            if step % cfg.log_every == 0:
                log.write({"step": step, "epoch": epoch + 1, "lr": opt.lr, "vol_per_s": rates[-1],
                           **{f"train/{k}": v for k, v in scalars.items()}})
        bar.close()

        # end of epoch: means, hook (probes, early stopping), log, checkpoint
        n_done = step - epoch * steps_per_epoch - start_batch
        last = {f"epoch/{k}": v / max(n_done, 1) for k, v in sums.items()}
        epoch += 1
        extra, stop = end_of_epoch(method, epoch, on_epoch_end, rank, world, device)
        record: dict[str, Any] = {"step": step, "epoch": epoch, **last, **{f"epoch/{k}": v for k, v in extra.items()},
                                  "time/elapsed_s": round(time.perf_counter() - started, 3)}  # since this process began
        log.write(record)
        if rank == 0 and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs or stop):
            save_checkpoint(ckpt_path, method=method.state_dict(), optimizer=opt.optimizer.state_dict(),
                            scheduler=opt.scheduler.state_dict(), scaler=opt.scaler.state_dict(),
                            epoch=epoch, step=step, stopped=stop)
        if rank == 0:  # a log line, printed with or without progress bars
            summary = ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in record.items()
                                if k.startswith("epoch/") and isinstance(v, float))
            progress_write(f"epoch {epoch}/{cfg.epochs}: {summary} ({record['time/elapsed_s']:.1f} s)")
        if stop:
            break
    log.close()
    return {"epoch": epoch, "step": step, **last, "mean_vol_per_s": sum(rates) / len(rates) if rates else None}
