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
def test_bad_encoder_files_are_one_data_error_naming_the_file(tmp_path: Path, break_it, match: str) -> None:  # type: ignore[no-untyped-def]
    path = saved(tmp_path)
    break_it(path)
    with pytest.raises(DataError, match=match) as info:
        load_encoder(path)
    assert str(tmp_path) in str(info.value)
