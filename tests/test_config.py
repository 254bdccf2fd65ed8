from __future__ import annotations

import re

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


# ---- found by the config/CLI audit ------------------------------------------------------------------


def test_a_runs_resolved_config_loads_again_and_exponent_floats_are_floats(  # type: ignore[no-untyped-def]
        tmp_path) -> None:
    from medssl.config import PretrainConfig, load_config, save_resolved

    cfg = load_config("configs/debug/tiny_cpu.yaml", ["train.lr=1e-4", "loss.temperature=5e-2"], PretrainConfig)
    assert cfg.train.lr == 1e-4 and cfg.loss["temperature"] == 0.05
    save_resolved(cfg, tmp_path / "config.yaml", {"git_sha": "abc", "resumed": False})
    again = load_config(tmp_path / "config.yaml", [], PretrainConfig)  # the _run provenance is skipped
    assert again == cfg


@pytest.mark.parametrize("override,match", [
    ("train.batch_size=0", "train.batch_size=0 must be >= 1"),
    ("train.checkpoint_every=0", "checkpoint_every"),
    ("train.lr=-1.0", "train.lr=-1.0 must be > 0"),
    ("train.epochs=-1", "train.epochs"),
    ("data.shape=[0,8,8]", "data.shape"),
    ("objective.alpha=-1", "objective.alpha=-1.0 must be a finite number >= 0"),
    ("objective.label=agee", "objective.label='agee' must be one of age, sex, site, instance"),
])
def test_out_of_range_and_ineffective_settings_fail_when_read(override: str, match: str) -> None:
    from medssl.config import PretrainConfig, load_config

    with pytest.raises(ConfigError, match=re.escape(match)):
        load_config("configs/debug/tiny_cpu.yaml", [override], PretrainConfig)


def test_a_bad_component_value_is_one_line_and_leaves_an_existing_run_alone(  # type: ignore[no-untyped-def]
        tmp_path, capsys) -> None:
    """Components were built after --overwrite had emptied the run folder: a typo cost the run."""
    from medssl.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "encoder.pt").write_text("the previous run")
    for bad in ("loss.temperature=-1", "views.backend=foo", "objective.label=agee"):
        assert main(["pretrain", "configs/debug/tiny_cpu.yaml", "--overwrite", f"out={run}", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medssl pretrain: error:"), err
    assert (run / "encoder.pt").read_text() == "the previous run"
