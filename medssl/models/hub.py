"""Encoders shared the Hugging Face way: a folder (or Hub repository) of ``model.safetensors`` + ``config.json``.

- ``model.safetensors``: the backbone's ``state_dict`` (safetensors: no pickle, nothing runs on load);
- ``config.json``: the encoder card (``backbone`` ``{"name", **kwargs}``, ``num_features``, ``input_shape``,
  ``voxel_size_mm``, ``modality``, ``preprocessing``, ...), the same card ``encoder.json`` holds;
- ``README.md``: the model card, for people (not read back).

``hf://ORG/NAME[@REVISION]`` names such a repository on the Hub. It is fetched through ``huggingface_hub``
(an optional extra: ``pip install medssl[hub]``) into its usual cache, which is read without any network
access when ``HF_HUB_OFFLINE=1`` (or when the Hub cannot be reached and the cache holds the revision).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from medssl.errors import DataError

HUB_PREFIX = "hf://"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "README.md"


def is_hub_reference(source: Any) -> bool:
    """True for ``hf://ORG/NAME[@REVISION]`` strings."""
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def parse_hub_reference(reference: str) -> tuple[str, str | None]:
    """``hf://ORG/NAME@REV`` -> ``("ORG/NAME", "REV")`` (``None`` revision: the default branch)."""
    repo_id, at, revision = reference[len(HUB_PREFIX):].partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or (at and not revision):
        raise DataError(f"{reference!r} is not a Hub reference: write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repo_id, revision or None


def hub_reference_name(reference: str) -> str:
    """A file-name-safe label of a reference: ``ORG--NAME`` (``ORG--NAME@REV`` with a revision)."""
    repo_id, revision = parse_hub_reference(reference)
    return repo_id.replace("/", "--") + (f"@{revision}" if revision else "")


def fetch_hub_encoder(reference: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local snapshot folder of ``hf://ORG/NAME[@REVISION]`` (downloaded once, then cached).

    Only ``config.json``, ``model.safetensors`` and ``README.md`` are fetched. ``cache_dir`` defaults to
    huggingface_hub's (``HF_HUB_CACHE``, else ``HF_HOME/hub``).

    Raises:
        DataError: huggingface_hub is not installed, or the revision is neither reachable nor cached.
    """
    repo_id, revision = parse_hub_reference(reference)
    try:
        from huggingface_hub import snapshot_download  # deferred: optional extra (pip install medssl[hub])
    except ImportError:
        raise DataError(f"{reference} needs huggingface_hub, which is not installed: pip install "
                        "medssl[hub] (or give the folder written by medssl export-hub)") from None
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                   allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, MODEL_CARD_FILE])
    except Exception as exc:  # not found, gated, no network and not cached, offline mode, ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot fetch {reference} from the Hugging Face Hub ({type(exc).__name__}: "
                        f"{reason}); check the name and revision, the network or HF_TOKEN (private "
                        "repositories); with HF_HUB_OFFLINE=1 only the local cache is read") from None
    return Path(folder)


def read_weights(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """The ``state_dict`` in ``path``: ``.safetensors`` (no pickle) or ``torch.save`` (``weights_only``)."""
    if path.suffix == ".safetensors":
        return load_file(path, device=str(map_location))
    return torch.load(path, map_location=map_location, weights_only=True)


def write_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write a ``state_dict`` as safetensors (contiguous CPU copies; ``format: pt`` metadata, as
    ``transformers`` writes it)."""
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path),
              metadata={"format": "pt"})
