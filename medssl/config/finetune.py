"""The fine-tuning schema (``medssl finetune``): task, recipe, safeguards and training, checked when read."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from medssl.config.core import component
from medssl.config.pretrain import DataConfig, TrainConfig
from medssl.errors import ConfigError


@dataclasses.dataclass
class TaskConfig:
    """Which diagnosis labels (the manifest's ``diagnosis`` column) are classified."""

    positive: str | None = "scz"  # binary: the positive class
    control: str = "control"  # class 0
    classes: list[str] | None = None  # multiclass instead of binary: labels besides control


@dataclasses.dataclass
class FinetuneTrainConfig(TrainConfig):
    """The engine's ``TrainConfig`` plus the sizes of the label-fraction curve."""

    epochs: int = 50
    n_labelled: list[int] | None = None  # labelled training participants per point (None = all)
    patience: int = 10  # early stopping: epochs without a better validation AUC


@dataclasses.dataclass
class FinetuneSection:
    """Recipe, splits, repeats and safeguards of ``medssl finetune``."""

    recipe: typing.Literal["linear", "partial", "full"] = "full"
    lr_decay: float = 0.75  # layer-wise lr decay per backbone stage (1 = off)
    partial_stages: int = 2  # partial: how many last backbone stages are unfrozen
    unfreeze: list[str] | None = None  # partial: explicit parameter-name prefixes instead
    dropout: float = 0.0
    balance: typing.Literal["loss", "oversample", "none"] = "loss"
    linear_C: list[float] = dataclasses.field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])
    splits: typing.Literal["auto", "fixed", "hold_out_sites", "site_kfold", "leave_sites_out"] = "auto"
    n_external_sites: int = 1  # hold_out_sites / site_kfold / leave_sites_out
    internal_fraction: float = 0.2  # share of training-site participants in the internal test
    n_folds: int = 5  # site_kfold / leave_sites_out
    val_fraction: float = 0.2  # of the training participants, for early stopping
    repeats: int = 3  # seeds train.seed, train.seed + 1, ...
    ensemble: int = 1  # models averaged per repeat (deep ensemble)
    leakage: typing.Literal["error", "warn", "off"] = "error"
    pretrain_cohort: str | None = None  # overrides the encoder card's cohort for the leakage guard


@dataclasses.dataclass
class FinetuneConfig:
    """``medssl finetune``: encoder (or scratch backbone) + linear head on a clinical cohort."""

    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(source="synthetic:scz"))
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    init: str | list[str] = "scratch"  # encoder.pt / run folder / scratch, or a list of them
    model: dict[str, Any] = component("densenet121_3d", "BACKBONES")  # the scratch backbone
    finetune: FinetuneSection = dataclasses.field(default_factory=FinetuneSection)
    train: FinetuneTrainConfig = dataclasses.field(default_factory=FinetuneTrainConfig)
    out: str = "runs/finetune"

    def __post_init__(self) -> None:
        """Checked when the config is read, before any folder is written."""
        if self.data.cache != "none":
            raise ConfigError(f"data.cache={self.data.cache} is read by medssl pretrain only; fine-tuning reads its "
                              "cohort through a DataLoader: set data.cache=none")
        ft = self.finetune
        if ft.repeats < 1 or ft.ensemble < 1:
            raise ConfigError("finetune.repeats and finetune.ensemble must be >= 1, "
                              f"got {ft.repeats}, {ft.ensemble}")
        if ft.recipe == "linear" and ft.ensemble > 1:
            raise ConfigError("finetune.ensemble > 1 needs recipe partial or full: the linear recipe's "
                              "logistic head is deterministic, its ensemble members would be identical")
        sizes = self.train.n_labelled
        if sizes is not None and (not sizes or sorted(sizes) != list(sizes) or min(sizes) < 1):
            raise ConfigError("train.n_labelled must be increasing positive sizes, e.g. [100, 300, 500]; "
                              f"got {sizes}")
