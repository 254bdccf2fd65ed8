"""Experiment configuration, in one home: the machinery (``core``) and every schema (``pretrain``,
``finetune``, ``study``).

Values come from code defaults <- one YAML file <- ``key=value`` overrides, and are checked before any
work: unknown keys, wrong types and unknown component names raise ``ConfigError`` naming the key and the
accepted values, so a typo fails before any data is read. Each experiment kind declares its schema as a
dataclass whose fields are plain values, nested section dataclasses, or *components*: a ``dict`` with
``name`` plus the keyword arguments of a registered factory.

Examples:
    >>> cfg = load_config(None, ["model.name=tiny_cnn3d", "train.epochs=5"], PretrainConfig)
    >>> cfg.train.epochs, cfg.model
    (5, {'name': 'tiny_cnn3d'})
"""

from __future__ import annotations

from medssl.config.core import (
    check_component,
    coerce,
    component,
    component_kwargs,
    config_key,
    from_dict,
    load_config,
    load_yaml,
    merge,
    parse_overrides,
    save_resolved,
    to_dict,
)
from medssl.config.finetune import FinetuneConfig, FinetuneSection, FinetuneTrainConfig, TaskConfig
from medssl.config.pretrain import (
    INSTANCE,
    LABEL_KEYS,
    DataConfig,
    ObjectiveConfig,
    PretrainConfig,
    TrainConfig,
    check_objective,
    move_objective_keys,
)
from medssl.config.study import STUDIES, StudyConfig, load_study, pretrain_config, resolve_file

__all__ = [
    "INSTANCE", "LABEL_KEYS", "STUDIES", "DataConfig", "FinetuneConfig", "FinetuneSection", "FinetuneTrainConfig",
    "ObjectiveConfig", "PretrainConfig", "StudyConfig", "TaskConfig", "TrainConfig", "check_component",
    "check_objective", "coerce", "component", "component_kwargs", "config_key", "from_dict", "load_config",
    "load_study", "load_yaml", "merge", "move_objective_keys", "parse_overrides", "pretrain_config",
    "resolve_file", "save_resolved", "to_dict",
]
