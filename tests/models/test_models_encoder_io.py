"""Encoder files: every bad card or weights file is one DataError naming the file (not a raw error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import medssl.models  # noqa: F401  (registers the backbones)
from medssl.errors import DataError
from medssl.models.encoder_io import card_path, load_encoder, save_encoder
from medssl.registry import BACKBONES


def saved(tmp_path: Path, width: int = 4) -> Path:
    torch.manual_seed(0)
    net = BACKBONES.build("tiny_cnn3d", width=width)
    save_encoder(tmp_path / "encoder.pt", net, {"backbone": {"name": "tiny_cnn3d", "width": width},
                                                 "input_shape": [8, 8, 8]})
    return tmp_path / "encoder.pt"


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = saved(tmp_path)
    net, card = load_encoder(tmp_path)
    original = torch.load(path, weights_only=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in original.items())
    assert card["backbone"] == {"name": "tiny_cnn3d", "width": 4}


@pytest.mark.parametrize("break_it,match", [
    (lambda p: card_path(p).write_text("{not json"), "not an encoder card"),
    (lambda p: card_path(p).write_text(json.dumps({"input_shape": [8, 8, 8]})), "'backbone'"),
    (lambda p: card_path(p).write_text(json.dumps({"backbone": {"name": "tiny_cnn3d", "width": 8}})),
     "differ in shape"),
    (lambda p: torch.save(torch.zeros(3), p), "not a state dict"),
    (lambda p: card_path(p).write_text(json.dumps({**json.loads(card_path(p).read_text()), "num_features": 999})),
     "num_features=999"),
])
def test_bad_encoder_files_are_one_data_error_naming_the_file(  # type: ignore[no-untyped-def]
        tmp_path: Path, break_it, match: str) -> None:
    path = saved(tmp_path)
    break_it(path)
    with pytest.raises(DataError, match=match) as info:
        load_encoder(path)
    assert str(tmp_path) in str(info.value)


def test_a_file_that_is_not_weights_says_what_to_do(tmp_path: Path) -> None:
    path = saved(tmp_path)
    path.write_text("encoder weights go here\n")
    with pytest.raises(DataError) as err:
        load_encoder(tmp_path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(path) in message
    assert "is not a weights file" in message and "medssl pretrain" in message


def test_a_checkpoint_points_to_its_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    saved(run)
    torch.save({"model": {}, "epoch": 3}, run / "checkpoints" / "last.pt")
    with pytest.raises(DataError, match="training checkpoint") as err:
        load_encoder(run / "checkpoints" / "last.pt")
    assert f"point at the run folder {run} or its encoder.pt" in str(err.value)


def test_a_folder_of_runs_lists_them(tmp_path: Path) -> None:
    for arm in ("yaware", "simclr"):
        (tmp_path / "demo" / arm).mkdir(parents=True)
        saved(tmp_path / "demo" / arm)
    (tmp_path / "demo" / "data").mkdir()
    with pytest.raises(DataError) as err:
        load_encoder(tmp_path / "demo")
    message = str(err.value)
    assert f"{tmp_path / 'demo'} holds no encoder.pt but the run folders simclr, yaware" in message
    assert str(tmp_path / "demo" / "simclr") in message and "data" not in message.split("folders")[1]
