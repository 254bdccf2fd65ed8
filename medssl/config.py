"""Experiment configuration: code defaults <- one YAML file <- ``key=value`` overrides, checked before work.

Each experiment kind (pretrain, finetune, ...) declares its schema as a dataclass whose fields are
plain values, nested section dataclasses, or *components*: a ``dict`` with ``name`` plus the keyword
arguments of a registered factory (``field(default_factory=..., metadata={"registry": "LOSSES"})``).
Unknown keys, wrong types and unknown component names raise ``ConfigError`` naming the key and the
accepted values, so a typo fails before any data is read.

Examples:
    >>> cfg = load_config("configs/pretrain/yaware_densenet121.yaml", ["train.epochs=5"], PretrainConfig)
    >>> cfg.train.epochs
    5
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from medssl import registry
from medssl.errors import ConfigError

C = TypeVar("C")


def component(name: str, registry_name: str, **kwargs: Any) -> Any:
    """A dataclass field holding ``{"name": name, **kwargs}`` checked against ``registry_name``."""
    return dataclasses.field(
        default_factory=lambda: {"name": name, **kwargs}, metadata={"registry": registry_name}
    )


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.1 needs a dot: ``1.0e-4``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe; exponent floats without a dot are floats)."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506  (a SafeLoader subclass)


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.epochs=5", "data.shape=[32,32,32]"]`` -> nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
        key, raw = item.split("=", 1)
        value = load_yaml(raw) if raw != "" else None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key under a non-section value")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. A component's new ``name`` drops the old kwargs."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "name" in value and value.get("name") != old.get("name"):
                out[key] = dict(value)
            else:
                out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), schema: type[C] = dict  # type: ignore[assignment]
) -> C:
    """Load ``path`` (YAML) over ``schema``'s defaults, apply overrides, validate, and return it."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = load_yaml(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    raw = merge(raw, parse_overrides(overrides))
    if schema is dict:
        return raw  # type: ignore[return-value]
    return from_dict(schema, raw)


def from_dict(schema: type[C], raw: dict[str, Any], prefix: str = "") -> C:
    """Build a schema dataclass from a nested dict, checking keys, types and components."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(schema)
    raw = {k: v for k, v in raw.items() if not str(k).startswith("_")}  # provenance, e.g. _run
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown key {prefix + key!r}.{hint} Accepted: {', '.join(fields)}"
            )
    defaults = schema()  # type: ignore[call-arg]
    values: dict[str, Any] = {}
    for name, fld in fields.items():
        default = getattr(defaults, name)
        where = prefix + name
        if "registry" in fld.metadata:
            if name in raw and not isinstance(raw[name], dict):
                raise ConfigError(f"{where} must be a mapping with a 'name', got {raw[name]!r}")
            spec = merge(default, raw[name]) if name in raw else default
            if name in raw and raw[name].get("name", default["name"]) != default["name"]:
                spec = dict(raw[name])  # another component: the default's kwargs do not apply
            values[name] = check_component(fld.metadata["registry"], spec, where)
        elif dataclasses.is_dataclass(default):
            values[name] = from_dict(type(default), raw.get(name, {}) or {}, where + ".")
        elif name in raw:
            values[name] = coerce(raw[name], hints[name], where)
        else:
            values[name] = default
    return schema(**values)


def check_component(registry_name: str, spec: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``spec = {"name": ..., **kwargs}`` against the named registry; return it unchanged."""
    if spec is None or spec.get("name") in (None, "none"):
        return {"name": "none"}
    reg = getattr(registry, registry_name)
    kwargs = {k: v for k, v in spec.items() if k != "name" and not k.startswith("_")}
    ignored = {"loss": {"alpha": "regularizer.alpha", "lambda": "regularizer.lambda"},
               "regularizer": {"label": "loss.label"}}.get(where, {})
    for key, instead in ignored.items():
        if key in kwargs:
            raise ConfigError(f"{where}.{key} would have no effect: set {instead} (the objective is "
                              "regularizer.alpha * loss + regularizer.lambda * regularizer, on loss.label)")
    reg.get(spec["name"])
    reg.check_kwargs(spec["name"], _strip_wrapper_keys(registry_name, kwargs), where + ".")
    return dict(spec)


# Keys of a component section consumed by the pipeline rather than passed to the factory.
WRAPPER_KEYS = {
    "LOSSES": {"lambda", "alpha", "label", "bias"},  # label/bias: batch keys fed as y/bias
    "VIEWS": {"backend"},  # "monai" (per sample, CPU workers) or "torch" (batched, on device)
}


def _strip_wrapper_keys(registry_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    drop = WRAPPER_KEYS.get(registry_name, set())
    return {k: v for k, v in kwargs.items() if k not in drop}


def component_kwargs(spec: dict[str, Any], registry_name: str = "") -> dict[str, Any]:
    """The factory kwargs of a component spec (without ``name`` and pipeline-level keys)."""
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return _strip_wrapper_keys(registry_name, kwargs)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint (int, float, str, bool, list[...], Optional, Literal)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A schema instance as a plain nested dict (what ``save_resolved`` writes)."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def save_resolved(cfg: Any, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config (plus ``extra``, e.g. git sha and versions) as YAML, atomically."""
    from medssl.utils.io import write_text

    payload = to_dict(cfg)
    if extra:
        payload = {**payload, "_run": extra}
    write_text(path, yaml.safe_dump(payload, sort_keys=False))


# --------------------------------------------------------------------------------------------------
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


@dataclasses.dataclass
class PretrainConfig:
    """``medssl pretrain``: backbone -> projection head -> contrastive loss (+ regulariser)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: dict[str, Any] = component("resnet18_3d", "BACKBONES")
    head: dict[str, Any] = component("mlp", "HEADS", hidden_dims=[512], out_dim=128)
    method: dict[str, Any] = component("siamese", "METHODS")
    loss: dict[str, Any] = component("infonce", "LOSSES", temperature=0.1)
    regularizer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "none"}, metadata={"registry": "LOSSES"}
    )
    views: dict[str, Any] = component("yaware", "VIEWS", backend="torch")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    out: str = "runs/pretrain"
