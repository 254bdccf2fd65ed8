"""The configuration machinery: YAML and ``key=value`` overrides merged over a schema's defaults,
checked key by key (types, ranges, registered components) before any work."""

from __future__ import annotations

import copy
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
from medssl.utils.io import write_text

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
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    schema: type[C] = dict,  # type: ignore[assignment]
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
    upgrade = getattr(schema, "upgrade", None)  # old key homes -> new ones, one layer at a time
    if upgrade is not None:
        raw = merge(upgrade(raw, str(path or "the config")), upgrade(parse_overrides(overrides), "the overrides"))
    else:
        raw = merge(raw, parse_overrides(overrides))
    if schema is dict:
        return raw  # type: ignore[return-value]
    return from_dict(schema, raw)


def from_dict(schema: type[C], raw: dict[str, Any], prefix: str = "") -> C:
    """Build a schema dataclass from a nested dict, checking keys, types and components."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {config_key(f): f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
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
        default = getattr(defaults, fld.name)
        where = prefix + name
        if "registry" in fld.metadata:
            if name in raw and not isinstance(raw[name], dict):
                raise ConfigError(f"{where} must be a mapping with a 'name', got {raw[name]!r}")
            spec = merge(default, raw[name]) if name in raw else default
            if name in raw and raw[name].get("name", default["name"]) != default["name"]:
                spec = dict(raw[name])  # another component: the default's kwargs do not apply
            values[fld.name] = check_component(fld.metadata["registry"], spec, where)
        elif dataclasses.is_dataclass(default):
            values[fld.name] = from_dict(type(default), raw.get(name, {}) or {}, where + ".")
        elif name in raw:
            values[fld.name] = coerce(raw[name], hints[fld.name], where)
        else:
            values[fld.name] = default
    return schema(**values)


def config_key(fld: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """The key a field is written as in YAML: its name, or ``metadata["key"]`` (``lambda``)."""
    return fld.metadata.get("key", fld.name)


def check_component(registry_name: str, spec: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``spec = {"name": ..., **kwargs}`` against the named registry; return it unchanged."""
    if spec is None or spec.get("name") in (None, "none"):
        return {"name": "none"}
    reg = getattr(registry, registry_name)
    kwargs = {k: v for k, v in spec.items() if k != "name" and not k.startswith("_")}
    reg.get(spec["name"])
    reg.check_kwargs(spec["name"], _strip_wrapper_keys(registry_name, kwargs), where + ".")
    return dict(spec)


# Keys of a component section consumed by the pipeline rather than passed to the factory.
WRAPPER_KEYS = {
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
    """A schema instance as a plain nested dict, keys as written in YAML (what ``save_resolved`` writes)."""
    if not dataclasses.is_dataclass(cfg):
        return dict(cfg)
    out = {}
    for fld in dataclasses.fields(cfg):
        value = getattr(cfg, fld.name)
        out[config_key(fld)] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out


def save_resolved(cfg: Any, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config (plus ``extra``, e.g. git sha and versions) as YAML, atomically."""
    payload = to_dict(cfg)
    if extra:
        payload = {**payload, "_run": extra}
    write_text(path, yaml.safe_dump(payload, sort_keys=False))
