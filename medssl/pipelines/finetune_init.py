"""``medssl finetune`` inputs: initialisations (encoders or scratch), the clinical cohort, leakage guard."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

import medssl.methods.classifier  # noqa: F401  (registers "classifier")
from medssl.config import DataConfig, component_kwargs
from medssl.data import CohortDataset, open_cohort
from medssl.data.leakage import check_leakage
from medssl.data.synthetic import ensure_synthetic
from medssl.errors import ConfigError, LeakageError
from medssl.eval.features import extract_features
from medssl.models import build_backbone
from medssl.models.encoder_io import card_path, encoder_name, load_encoder, resolve_encoder_path
from medssl.pipelines.common import open_configured_cohort
from medssl.registry import METHODS

SYNTHETIC_PREFIX = "synthetic:"


@dataclasses.dataclass
class Init:
    """One initialisation: ``scratch`` (the config's ``model``) or an encoder file with its card."""

    name: str
    source: str
    card: dict[str, Any] | None = None
    shape: list[int] | None = None
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)  # the card's resize, normalize
    dataset: Any = None  # CohortDataset with this encoder's preprocessing
    features: np.ndarray | None = None  # linear recipe: (N_labelled, F) frozen features
    feature_row: np.ndarray | None = None  # table row -> row of ``features`` (-1 when absent)
    trainable_prefixes: list[str] = dataclasses.field(default_factory=list)

    def backbone(self, cfg: Any) -> nn.Module:
        """A fresh backbone: random (scratch) or the encoder's weights (strict keys, weights_only)."""
        if self.card is None:
            return build_backbone(cfg.model["name"], activation_checkpointing=cfg.train.activation_checkpointing,
                                  **component_kwargs(cfg.model))

        return load_encoder(self.source)[0]

    def prepare(self, cfg: Any, cohort: Any, labels: np.ndarray, device: torch.device) -> None:
        """Build the dataset and, for the linear recipe, embed the labelled rows once."""
        self.dataset = CohortDataset(cohort, shape=self.shape,
                                     resize=self.preprocessing.get("resize", cfg.data.resize),
                                     normalize=self.preprocessing.get("normalize", "zscore"),
                                     cache_dir=cfg.data.cache_dir)
        if cfg.finetune.recipe != "linear":
            self.trainable_prefixes = build_classifier(self, cfg, 2, None).trainable_prefixes
            return

        rows = np.flatnonzero(labels >= 0)
        self.features, _ = extract_features(self.backbone(cfg), Subset(self.dataset, rows.tolist()),
                                            device=device, batch_size=cfg.train.batch_size,
                                            num_workers=cfg.data.num_workers, progress=False)
        self.feature_row = np.full(len(labels), -1)
        self.feature_row[rows] = np.arange(len(rows))


def build_classifier(init: Init, cfg: Any, n_classes: int, class_weights: Any) -> nn.Module:
    """The ``classifier`` method around a fresh backbone of ``init``, with the config's recipe."""
    ft = cfg.finetune
    return METHODS.get("classifier")(
        backbone=init.backbone(cfg), num_classes=n_classes, freeze=ft.recipe,
        class_weights=class_weights, lr_decay=ft.lr_decay, partial_stages=ft.partial_stages,
        unfreeze=ft.unfreeze, dropout=ft.dropout,
    )


def resolve_inits(cfg: Any) -> list[Init]:
    """``init`` (one or a list) -> ``Init`` objects; encoder cards fix the input shape and modality."""
    sources = [cfg.init] if isinstance(cfg.init, str) else list(cfg.init)
    if not sources:
        raise ConfigError("init is empty: give scratch, a run folder or an encoder.pt (or a list of them)")
    inits: list[Init] = []
    for source in sources:
        if source == "scratch":
            inits.append(Init("scratch", "scratch", shape=cfg.data.shape))
            continue
        path = resolve_encoder_path(source)
        card = json.loads(card_path(path).read_text())
        shape = (card.get("preprocessing") or {}).get("shape") or card.get("input_shape")
        if cfg.data.shape is not None and shape is not None and list(cfg.data.shape) != list(shape):
            raise ConfigError(f"data.shape={cfg.data.shape} differs from the input shape {shape} of "
                              f"encoder {path}; drop data.shape (the card's shape is used)")
        if card.get("modality") not in (None, cfg.data.modality):
            raise ConfigError(f"encoder {path} was pretrained on {card['modality']!r} but "
                              f"data.modality={cfg.data.modality!r}; set data.modality={card['modality']}")
        name = encoder_name(source)
        recorded = {k: v for k, v in (card.get("preprocessing") or {}).items() if k in ("resize", "normalize")}
        if recorded.get("resize", cfg.data.resize) != cfg.data.resize:
            warnings.warn(f"encoder {path} was pretrained on volumes resized by {recorded['resize']!r}: "
                          f"its inputs are prepared that way, not by data.resize={cfg.data.resize!r}",
                          stacklevel=2)
        inits.append(Init(name, str(path), card, list(shape) if shape else None, recorded))
    names = [i.name for i in inits]
    for i, init in enumerate(inits):
        if names.count(init.name) > 1:
            init.name = f"{init.name}#{i}"
    return inits


def ensure_clinical_synthetic(kind: str, n_subjects: int, shape: tuple[int, ...], seed: int = 0) -> Path:
    """The synthetic clinical cohort ``kind`` (scz, bd, asd; NIfTI + manifest), generated once
    (``ensure_synthetic(cohort=kind)``, cached beside the healthy default)."""
    if kind not in ("scz", "bd", "asd"):
        raise ConfigError(f"data.source=synthetic:{kind} is unknown; use synthetic:scz, synthetic:bd or "
                          "synthetic:asd")
    return ensure_synthetic(n_subjects=n_subjects, shape=tuple(shape), seed=seed, cohort=kind)


def open_task_cohort(data: DataConfig) -> Any:
    """The clinical cohort: a manifest/folder, or ``synthetic:<scz|bd|asd>`` (generated once, cached)."""
    if not str(data.source).startswith(SYNTHETIC_PREFIX):
        return open_configured_cohort(data)

    kind = str(data.source)[len(SYNTHETIC_PREFIX):]
    source = ensure_clinical_synthetic(kind, data.synthetic_subjects, tuple(data.synthetic_shape))
    return open_cohort(source, modality=data.modality, data_root=data.data_root)


def _pretrain_data(init: Init, override: str | None) -> DataConfig | None:
    """The pretraining cohort's ``DataConfig``: the override, else the card's config/``cohort``."""
    card = init.card or {}
    recorded = ((card.get("config") or {}).get("data")) or {}
    source = override or card.get("cohort") or recorded.get("source")
    if source is None:
        return None
    known = {f.name for f in dataclasses.fields(DataConfig)}
    fields = {k: v for k, v in recorded.items() if k in known} if source == recorded.get("source") else {}
    return DataConfig(**{**fields, "source": source, "modality": card.get("modality") or "vbm"})


def guard_leakage(inits: list[Init], cohort: Any, cfg: Any) -> list[dict[str, Any]]:
    """Check each encoder's pretraining cohort against the clinical one (participants and studies).

    ``finetune.leakage``: ``error`` raises ``LeakageError``; ``warn`` records the overlap and goes on;
    ``off`` records that nothing was checked. Returns one record per encoder (stored in the outputs).
    """
    mode = cfg.finetune.leakage
    records = []
    for init in inits:
        if init.card is None:
            records.append({"init": init.name, "checked": False, "reason": "scratch: no pretraining"})
            continue
        if mode == "off":
            warnings.warn(f"leakage guard off for {init.source} (finetune.leakage=off)", stacklevel=2)
            records.append({"init": init.name, "checked": False, "reason": "finetune.leakage=off"})
            continue
        data = _pretrain_data(init, cfg.finetune.pretrain_cohort)
        if data is None:
            msg = (f"encoder {init.source} records no pretraining cohort, so leakage cannot be checked; "
                   "set finetune.pretrain_cohort=PATH, or finetune.leakage=warn to go on unchecked")
            if mode == "error":
                raise ConfigError(msg)
            warnings.warn(msg, stacklevel=2)
            records.append({"init": init.name, "checked": False, "reason": "unknown pretraining cohort"})
            continue
        pretrain = open_task_cohort(data)
        try:
            problems = check_leakage(pretrain, cohort, on=("participant_id", "study"), mode=mode)
        except LeakageError as exc:
            raise LeakageError(f"{exc}. Pass finetune.leakage=warn to fine-tune anyway (the overlap is "
                               "recorded in metrics.json)") from exc
        records.append({"init": init.name, "checked": True, "pretrain_cohort": data.source,
                        "mode": mode, "overlap": problems})
    return records

