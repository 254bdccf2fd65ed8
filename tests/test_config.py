from __future__ import annotations

import pytest

from medssl.config import PretrainConfig, load_config, parse_overrides
from medssl.errors import ConfigError


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["train.epochs=5", "data.shape=[32,32,32]", "out=x"]) == {
        "train": {"epochs": 5},
        "data": {"shape": [32, 32, 32]},
        "out": "x",
    }


def test_unknown_key_names_the_key_and_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"train\.epoch'.*Did you mean 'epochs'"):
        load_config(None, ["train.epoch=3"], PretrainConfig)


def test_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.batch_size must be an integer"):
        load_config(None, ["train.batch_size=big"], PretrainConfig)
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        load_config(None, ["train.precision=fp8"], PretrainConfig)


def test_component_typo_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'tiny_cnn'.*tiny_cnn3d"):
        load_config(None, ["model.name=tiny_cnn"], PretrainConfig)
    with pytest.raises(ConfigError, match="unknown key 'model.widht'"):
        load_config(None, ["model.name=tiny_cnn3d", "model.widht=4"], PretrainConfig)


def test_overrides_win_and_types_are_coerced() -> None:
    cfg = load_config(None, ["model.name=tiny_cnn3d", "model.width=4", "train.lr=1"], PretrainConfig)
    assert cfg.model == {"name": "tiny_cnn3d", "width": 4}
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0
