"""``pretrain(cfg)``: cohort -> views -> backbone + head -> objective -> train loop -> encoder.pt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medssl.config import PretrainConfig, component_kwargs, save_resolved, to_dict
from medssl.data import CohortDataset
from medssl.data.device_cache import DeviceCohort
from medssl.data.provenance import describe_cohort
from medssl.engine.curves import write_training_curves
from medssl.engine.launch import init_distributed_from_env, shutdown_distributed, wait_for_every_rank
from medssl.engine.train import train_loop
from medssl.errors import ConfigError, DataError
from medssl.eval.features import extract_features
from medssl.eval.probes import fit_and_score_probes
from medssl.models.backbones import COMPUTE_ONLY_KWARGS
from medssl.models.encoder_io import save_encoder
from medssl.methods import build_method
from medssl.models import build_backbone, build_head
from medssl.pipelines.common import (
    build_objective,
    open_configured_cohort,
    prepare_run_dir,
)
from medssl.transforms import build_views
from medssl.utils.device import resolve_device
from medssl.utils.repro import environment_info, seed_everything


def method_from_config(cfg: PretrainConfig, input_shape: list[int] | None = None) -> torch.nn.Module:
    """Backbone, head, objective and method from the config (the only place they meet).

    ``input_shape`` (D, H, W) of the training volumes is handed to methods that reconstruct them
    (Model Genesis, VAE) unless the config sets ``method.input_shape``.
    """
    backbone = build_backbone(cfg.model["name"], activation_checkpointing=cfg.train.activation_checkpointing,
                              **component_kwargs(cfg.model))
    head = build_head(cfg.head["name"], backbone.num_features, **component_kwargs(cfg.head))
    objective = build_objective(cfg.loss, cfg.regularizer, cfg.objective)
    # label and bias: what the objective reads, checked against the components when the config was read
    return build_method(cfg.method["name"], backbone, head, objective, label=cfg.objective.batch_label,
                        bias=cfg.objective.bias, input_shape=input_shape or cfg.data.shape,
                        **component_kwargs(cfg.method))


def pretrain(cfg: PretrainConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Train an encoder as ``cfg`` says; returns the run folder (holding ``encoder.pt``)."""
    device = resolve_device(cfg.train.device)
    rank, world, device = init_distributed_from_env(device)
    run_dir = Path(cfg.out)
    try:
        seed_everything(cfg.train.seed)

        cohort = open_configured_cohort(cfg.data)
        views = component_kwargs(cfg.views)
        transform, augment = build_views(cfg.views["name"], backend=views.pop("backend", "torch"), device=device,
                                         **views)
        train_set = CohortDataset(cohort.select([cfg.data.train_split]), transform=transform,
                                  shape=cfg.data.shape, resize=cfg.data.resize, cache_dir=cfg.data.cache_dir)
        input_shape = list(cfg.data.shape or cohort.image_shape)
        try:
            method = method_from_config(cfg, input_shape)
        except (ValueError, TypeError) as exc:  # a component refused its settings
            raise ConfigError(f"invalid settings in the config (model/head/method/loss/regularizer): {exc}") \
                from exc
        check_labels(train_set.cohort, {"label": getattr(method, "label", None),
                                        "bias": getattr(method, "bias", None)})
        if cfg.data.cache == "device":  # before the run folder: a cohort that does not fit is refused
            train_set = DeviceCohort.build(train_set, device, num_workers=cfg.data.num_workers,
                                           progress=rank == 0)
        # everything is built: only now is the run folder touched (a bad config never costs a run)
        resuming = prepare_run_dir(run_dir, cfg, resume, overwrite) if rank == 0 else True
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_resolved(cfg, run_dir / "config.yaml", {**environment_info(), "resumed": resuming})
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        probe = make_probe(cohort, cfg, device, train_set) if cfg.train.probe_every else None
        train_loop(method, train_set, augment, cfg.train, run_dir, device=device, rank=rank,
                   world=world, on_epoch_end=probe, num_workers=cfg.data.num_workers,
                   tensorboard=cfg.train.tensorboard)
        if rank == 0:
            write_training_curves(run_dir)  # RUN/curves.png from metrics.jsonl
            save_encoder(run_dir / "encoder.pt", method.backbone, {
                "backbone": {k: v for k, v in cfg.model.items() if k not in COMPUTE_ONLY_KWARGS},
                "input_shape": input_shape,
                "cohort_shape": list(cohort.image_shape),  # the grid before preprocessing (export checks it)
                "modality": cfg.data.modality,
                "preprocessing": {"shape": input_shape, "resize": cfg.data.resize,
                                  "normalize": "zscore"},
                "cohort": cfg.data.source,
                "pretraining_cohort": describe_cohort(cohort, cfg.data.train_split),  # no paths: shareable
                "method": cfg.method["name"],
                "loss": dict(cfg.loss),
                "regularizer": dict(cfg.regularizer),
                "objective": to_dict(cfg.objective),
                "config": to_dict(cfg),
            })
        wait_for_every_rank()  # the ranks leave together, after rank 0's writes (not on an error: a peer
        # may be inside a collective that would never match this barrier)
    finally:
        shutdown_distributed()
    return run_dir


def check_labels(cohort: Any, roles: dict[str, str | None]) -> None:
    """``DataError`` when a training scan lacks a value the objective reads (``{"label": "age", ...}``).

    One missing age would make every kernel weight of its batch NaN; the loss then stops training with a
    non-finite error mid-run. Checked here, once, it names the scans instead.
    """
    table = cohort.table
    for role, key in roles.items():
        if not key or key not in table.columns:
            continue
        column = table[key]
        missing = column.isna() if column.dtype.kind in "fiu" else column.astype(str).str.strip().eq("")
        if missing.any():
            ids = table.loc[missing, "participant_id"].head(5).tolist()
            raise DataError(
                f"{cohort.source}: {int(missing.sum())} training scan(s) have no {key!r} (e.g. {ids}), "
                f"which the objective uses as its {role}; fill it in, or leave those scans out of the "
                "training split"
            )


def make_probe(cohort: Any, cfg: PretrainConfig, device: torch.device, train_set: Any = None) -> Any:
    """Frozen-feature probe on the validation split: age MAE (ridge) and site BAcc (logistic); the
    training split is embedded from ``train_set`` when it is a ``DeviceCohort`` (bf16-rounded volumes)."""
    train = train_set if isinstance(train_set, DeviceCohort) else CohortDataset(
        cohort.select([cfg.data.train_split]), shape=cfg.data.shape, resize=cfg.data.resize)
    val = CohortDataset(cohort.select([cfg.data.val_split]), shape=cfg.data.shape,
                        resize=cfg.data.resize)

    def probe(epoch: int, method: torch.nn.Module) -> dict[str, float]:
        if epoch % cfg.train.probe_every:
            return {}
        backbone = method.backbone
        x_train, meta_train = extract_features(backbone, train, device=device, progress=False)
        x_val, meta_val = extract_features(backbone, val, device=device, progress=False)
        return fit_and_score_probes(x_train, meta_train, x_val, meta_val)

    return probe
