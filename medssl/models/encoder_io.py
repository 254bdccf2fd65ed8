"""Encoder files: ``encoder.pt`` (backbone weights only) plus ``encoder.json`` (its card).

The same card and weights also come as an exported folder (``model.safetensors`` + ``config.json``) or an
``hf://ORG/NAME[@REVISION]`` Hub reference (:mod:`medssl.models.hub`); every loader accepts all three.

The card records what is needed to rebuild and feed the encoder: ``backbone`` (``{"name", **kwargs}``
of the registered factory), ``num_features``, ``input_shape`` (D, H, W), ``modality``,
``preprocessing`` (dict) and free provenance (``cohort``, ``loss``, ``run``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medssl.errors import DataError
from medssl.models.hub import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    fetch_hub_encoder,
    hub_reference_name,
    is_hub_reference,
    read_weights,
)
from medssl.registry import BACKBONES
from medssl.utils.io import atomic_path, write_json


def card_path(weights: str | Path) -> Path:
    """``encoder.json`` beside ``encoder.pt``; ``config.json`` beside ``model.safetensors``."""
    weights = Path(weights)
    return weights.with_name(CONFIG_FILE) if weights.suffix == ".safetensors" else weights.with_suffix(".json")


def save_encoder(path: str | Path, backbone: nn.Module, card: dict[str, Any]) -> None:
    """Save the backbone's ``state_dict`` to ``path`` and ``card`` beside it, both atomically."""
    if "backbone" not in card or "name" not in card["backbone"]:
        raise ValueError("card must hold backbone={'name': ..., **kwargs}")
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_json(card_path(path), {"num_features": int(getattr(backbone, "num_features", -1)), **card})


def resolve_encoder_path(source: str | Path) -> Path:
    """The weights file of a run folder (``RUN/encoder.pt``), an exported folder (``model.safetensors``),
    an ``hf://ORG/NAME[@REVISION]`` reference (its cached snapshot) or a weights file given directly.

    Raises:
        DataError: one line with the fix: a folder of runs lists them; a training checkpoint
            (``RUN/checkpoints/*.pt``) points to its run folder; otherwise the missing file or card.
    """
    source = fetch_hub_encoder(source) if is_hub_reference(source) else Path(source)
    path = source
    if source.is_dir():
        exported = source / WEIGHTS_FILE
        path = exported if exported.is_file() and not (source / "encoder.pt").is_file() else source / "encoder.pt"
    if source.is_dir() and not path.is_file():
        runs = sorted(p.name for p in source.iterdir() if (p / "encoder.pt").is_file())
        if runs:
            raise DataError(
                f"{source} holds no encoder.pt but the run folders {', '.join(runs)}: give one of them, e.g. "
                f"medssl evaluate {source / runs[0]} (or compare them: medssl compare "
                f"{' '.join(str(source / r) for r in runs)} --out OUT)"
            )
        if (source / "checkpoints" / "last.pt").is_file():
            raise DataError(f"{source} has no encoder.pt yet: its training did not finish; resume it "
                            "(medssl pretrain with the same config and out=) to write encoder.pt")
    if path.parent.name == "checkpoints" and not card_path(path).is_file():
        run = path.parent.parent
        has = "or its encoder.pt" if (run / "encoder.pt").is_file() else "once training has written encoder.pt"
        raise DataError(f"{path} is a training checkpoint, not an encoder: point at the run folder {run} {has}")
    if not path.is_file():
        raise DataError(f"no encoder at {path}: give a run folder with encoder.pt, a folder written by "
                        "medssl export-hub, hf://ORG/NAME, or the weights file")
    if not card_path(path).is_file():
        raise DataError(f"{path} has no card {card_path(path).name} beside it; give the run folder that "
                        "medssl pretrain wrote (encoder.pt and encoder.json side by side)")
    return path


def load_encoder(source: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone from its card and load its weights (``weights_only=True``, strict keys).

    Raises:
        DataError: missing files, or keys that do not match (both lists are reported).
    """
    path = resolve_encoder_path(source)
    try:
        card = json.loads(card_path(path).read_text())
        spec = dict(card["backbone"])
        name = spec.pop("name")
    except (ValueError, KeyError, TypeError) as exc:  # corrupt JSON, no backbone section or name
        raise DataError(f"{card_path(path)} is not an encoder card with a 'backbone' {{'name': ...}} "
                        f"section: {exc!r}") from exc
    backbone = BACKBONES.build(name, **spec)
    try:
        state = read_weights(path, map_location)
    except Exception as exc:  # not a torch file, corrupt or truncated: torch's reason, first line only
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DataError(f"{path} is not a weights file medssl can read ({reason[:120]}); restore the "
                        "encoder.pt that medssl pretrain wrote beside its encoder.json, or re-run medssl "
                        "pretrain") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} holds {type(state).__name__}, not a state dict of tensors")
    expected = backbone.state_dict()
    missing, unexpected = _key_diff(expected.keys(), state.keys())
    if missing or unexpected:
        raise DataError(
            f"{path} does not match backbone {name!r}: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(state[k].shape)}" for k, v in expected.items()
              if v.shape != state[k].shape]
    if shapes:
        raise DataError(f"{path} does not fit the card's backbone {card['backbone']}: "
                        f"{len(shapes)} tensor(s) differ in shape (card vs file), e.g. {shapes[:3]}")
    backbone.load_state_dict(state, strict=True)
    if card.get("num_features", backbone.num_features) != backbone.num_features:
        raise DataError(f"{card_path(path)} says num_features={card['num_features']} but its backbone "
                        f"has {backbone.num_features}")
    return backbone, card


def encoder_name(source: str | Path) -> str:
    """A short label: the run or exported folder's name, ``ORG--NAME`` of a Hub reference, else the
    weights file's stem."""
    if is_hub_reference(source):
        return hub_reference_name(str(source))
    path = Path(source)
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name in ("encoder.pt", WEIGHTS_FILE) else path.stem


def _key_diff(expected: Any, found: Any) -> tuple[list[str], list[str]]:
    expected, found = set(expected), set(found)
    return sorted(expected - found), sorted(found - expected)
