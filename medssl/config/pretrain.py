"""The pretraining schema: data, training and objective sections, and ``PretrainConfig`` (``medssl pretrain``).

``ObjectiveConfig`` says what is learned, in one place (label, bias, alpha, lambda); ``check_objective``
checks it against the components when the config is read.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
import warnings
from typing import Any

from medssl import registry
from medssl.config.core import component
from medssl.errors import ConfigError, MedsslWarning

# Sections shared by the experiment kinds. Config keys equal constructor parameter names.


@dataclasses.dataclass
class DataConfig:
    """Where the cohort comes from and how volumes are shaped before augmentation."""

    source: str = "synthetic"  # OpenBHB root (any layout), manifest CSV, or "synthetic"
    modality: typing.Literal["vbm", "quasiraw"] = "vbm"
    shape: list[int] | None = None  # target (D, H, W); None keeps the stored shape
    resize: typing.Literal["crop_pad", "resample"] = "crop_pad"
    data_root: str | None = None  # base folder for relative manifest paths
    train_split: str = "train"
    val_split: str | None = "internal_test"
    num_workers: int = 0
    cache_dir: str | None = None  # on-disk cache of the deterministic preprocessing
    cache: typing.Literal["none", "device"] = "none"  # device: preprocessed once, held on the device (bf16)
    synthetic_subjects: int = 96  # size of the embedded default cohort when source=synthetic
    synthetic_shape: list[int] = dataclasses.field(default_factory=lambda: [32, 40, 32])

    def __post_init__(self) -> None:
        for key in ("shape", "synthetic_shape"):
            value = getattr(self, key)
            if value is not None and (len(value) != 3 or not all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)):
                raise ConfigError(f"data.{key}={value} must be three whole numbers >= 1 (D, H, W)")
        if self.num_workers < 0 or self.synthetic_subjects < 1:
            raise ConfigError(f"data.num_workers={self.num_workers} must be >= 0 and "
                              f"data.synthetic_subjects={self.synthetic_subjects} >= 1")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, precision and bookkeeping of a training loop."""

    epochs: int = 100
    batch_size: int = 32
    optimizer: typing.Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 5e-5
    momentum: float = 0.9  # SGD only
    schedule: typing.Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: float = 0.0
    step_every: int = 10  # step schedule: multiply lr by step_gamma every step_every epochs
    step_gamma: float = 0.9
    grad_clip: float | None = None
    # autocast dtype. auto = bf16 on CUDA, fp32 on the CPU, where bf16 runs are not repeatable and can be
    # wrong: oneDNN's bf16 3-D convolution weight gradients (torch 2.13 CPU, AVX-512) return unset
    # memory (1e18, NaN) on feature maps 2 voxels deep. An explicit bf16 on the CPU runs, with a warning.
    precision: typing.Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile the backbone in place (opt-in; see engine/train.py)
    grad_cache_chunk: int | None = None  # subjects per encoder chunk (GradCache); None = whole batch
    seed: int = 0
    device: str = "auto"  # auto = cuda if available, else cpu
    num_threads: int | None = None  # CPU threads for torch (None = torch's default); see benchmarks
    log_every: int = 10  # steps between metrics.jsonl records
    probe_every: int = 0  # epochs between frozen-feature probes on data.val_split (0 = off)
    max_steps_per_epoch: int | None = None  # cap for quick debugging runs
    checkpoint_every: int = 1  # epochs between checkpoints/last.pt writes
    tensorboard: bool = True  # also write TensorBoard scalars to RUN/tb

    def __post_init__(self) -> None:
        """Ranges checked when the config is read, before any work (not deep inside the loop)."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "step_every": self.step_every,
                    "log_every": self.log_every, "checkpoint_every": self.checkpoint_every,
                    "max_steps_per_epoch": self.max_steps_per_epoch, "grad_cache_chunk": self.grad_cache_chunk,
                    "num_threads": self.num_threads}
        for key, value in positive.items():
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigError(f"train.{key}={value!r} must be >= 1 (a whole number)")
        for key, value in {"lr": self.lr, "grad_clip": self.grad_clip}.items():
            if value is not None and not value > 0:
                raise ConfigError(f"train.{key}={value} must be > 0")
        for key, value in {"weight_decay": self.weight_decay, "warmup_epochs": self.warmup_epochs,
                           "probe_every": self.probe_every, "momentum": self.momentum,
                           "step_gamma": self.step_gamma}.items():
            if not value >= 0:
                raise ConfigError(f"train.{key}={value} must be >= 0")


LABEL_KEYS = ("age", "sex", "site")  # numeric batch keys an objective can read as its label or bias
INSTANCE = "instance"  # objective.label asking on purpose for instance discrimination (no label)


@dataclasses.dataclass
class ObjectiveConfig:
    """What is learned, in one place: ``alpha * loss(z1, z2, y=batch[label], bias=batch[bias]) + lambda * R``.

    ``R`` is the regulariser (``regularizer:``, e.g. FairKL). ``label`` is what the loss (or a
    supervised method) learns from: ``age`` for y-aware / L_thr / L_exp, ``sex`` for SupCon, or
    ``instance`` to train a label-using loss without labels on purpose (each subject its own class).
    ``bias`` is what a debiasing regulariser removes (``site`` for FairKL). These keys stay when a
    component's ``name`` changes, so swapping y-aware for L_exp keeps the label.
    """

    label: str | None = None
    bias: str | None = None
    alpha: float = 1.0  # weight of the loss
    lam: float = dataclasses.field(default=1.0, metadata={"key": "lambda"})  # weight of the regulariser

    def __post_init__(self) -> None:
        for key, value, accepted in (("label", self.label, (*LABEL_KEYS, INSTANCE)), ("bias", self.bias, LABEL_KEYS)):
            if value is not None and value not in accepted:
                raise ConfigError(f"objective.{key}={value!r} must be one of {', '.join(accepted)}")
        for key, value in (("alpha", self.alpha), ("lambda", self.lam)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"objective.{key}={value} must be a finite number >= 0")

    @property
    def batch_label(self) -> str | None:
        """The batch key fed as ``y`` (None for ``instance``)."""
        return None if self.label == INSTANCE else self.label


# Old homes of the objective's keys, before the ``objective:`` section: (section, key) -> objective key.
OBJECTIVE_MOVES = {("loss", "label"): "label", ("loss", "bias"): "bias", ("loss", "alpha"): "alpha",
                   ("loss", "lambda"): "lambda", ("regularizer", "label"): "label",
                   ("regularizer", "bias"): "bias", ("regularizer", "alpha"): "alpha",
                   ("regularizer", "lambda"): "lambda", ("method", "label"): "label",
                   ("method", "bias"): "bias"}


def move_objective_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """One layer of a pretrain config with ``loss.label`` & co. moved to ``objective:`` (a warning each).

    Each layer (a YAML file, the overrides, a study arm) moves on its own, before layers merge, so a
    later layer that renames the loss cannot drop an earlier layer's label.

    Examples:
        >>> move_objective_keys({"loss": {"name": "exp", "label": "age"}}, "x.yaml")
        {'loss': {'name': 'exp'}, 'objective': {'label': 'age'}}
    """
    if not isinstance(raw, dict) or not any(isinstance(raw.get(s), dict) and k in raw[s]
                                            for s, k in OBJECTIVE_MOVES):
        return raw
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    objective = out.setdefault("objective", {})
    if not isinstance(objective, dict):
        raise ConfigError(f"{where}: objective must be a mapping (label, bias, alpha, lambda)")
    for (section, key), target in OBJECTIVE_MOVES.items():
        if not isinstance(out.get(section), dict) or key not in out[section]:
            continue
        value = out[section].pop(key)
        if target in objective and objective[target] != value:
            raise ConfigError(f"{section}.{key}={value!r} and objective.{target}={objective[target]!r} "
                              f"disagree in {where}; keep objective.{target} only")
        objective[target] = value
        warnings.warn(f"{section}.{key} in {where} is now objective.{target}; moved it (write "
                      f"objective: {{{target}: {value}}} to silence this)", MedsslWarning, stacklevel=2)
    return out


@dataclasses.dataclass
class PretrainConfig:
    """``medssl pretrain``: backbone -> projection head -> objective (loss + regulariser), on ``objective``."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: dict[str, Any] = component("resnet18_3d", "BACKBONES")
    head: dict[str, Any] = component("mlp", "HEADS", hidden_dims=[512], out_dim=128)
    method: dict[str, Any] = component("siamese", "METHODS")
    loss: dict[str, Any] = component("infonce", "LOSSES", temperature=0.1)
    regularizer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "none"}, metadata={"registry": "LOSSES"}
    )
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    views: dict[str, Any] = component("yaware", "VIEWS", backend="torch")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    out: str = "runs/pretrain"

    upgrade = staticmethod(move_objective_keys)

    def __post_init__(self) -> None:
        check_objective(self.objective, self.method["name"], self.loss["name"], self.regularizer["name"])
        if self.data.cache == "device" and self.views.get("backend", "torch") == "monai":
            raise ConfigError("data.cache=device feeds whole batches from the device, and views.backend=monai "
                              "makes views per sample in DataLoader workers: set views.backend=torch or "
                              "data.cache=none")


def check_objective(objective: ObjectiveConfig, method: str, loss: str, regularizer: str) -> None:
    """``ConfigError`` when a component needs a label or bias that ``objective`` does not give.

    A loss that reads ``y`` without one would silently fall back to instance discrimination; a
    regulariser without its bias would fail at the first step. An ``objective.label`` or ``bias`` that
    no component reads gives a warning.
    """
    factory = registry.METHODS.get(method)
    forwards = "label" in inspect.signature(factory).parameters  # hands labels to the loss/regulariser
    parts = [(f"loss {loss}", loss), (f"regularizer {regularizer}", regularizer)]
    components = [(what, registry.LOSSES.get(name)) for what, name in parts if name != "none" and forwards]
    label_users = [what for what, c in components if getattr(c, "uses_labels", False)]
    needs_label = [what for what, c in components if getattr(c, "needs_labels", False)]
    if getattr(factory, "learns_label", False):
        label_users.append(f"method {method}")
        needs_label.append(f"method {method}")
    bias_users = [what for what, c in components if getattr(c, "uses_bias", False)]
    if label_users and objective.label is None:
        raise ConfigError(f"{' and '.join(label_users)} learn(s) from a label, and objective.label is not "
                          f"set: set objective.label=age (or {', '.join(LABEL_KEYS[1:])}); "
                          f"objective.label={INSTANCE} trains without labels on purpose")
    if needs_label and objective.label == INSTANCE:
        raise ConfigError(f"{' and '.join(needs_label)} cannot train without a label "
                          f"(objective.label={INSTANCE}): set objective.label=age (or another label)")
    if bias_users and objective.bias is None:
        raise ConfigError(f"{' and '.join(bias_users)} remove(s) a bias, and objective.bias is not set: "
                          "set objective.bias=site (the batch key of the bias to remove)")
    for key, users in (("label", label_users), ("bias", bias_users)):
        value = getattr(objective, key)
        if value is not None and not users:
            warnings.warn(f"objective.{key}={value} is read by no component (method {method}, loss {loss}, "
                          f"regularizer {regularizer}): this run does not learn from it", MedsslWarning,
                          stacklevel=2)
