"""``export_openbhb``: the three files, their content, atomicity and refusals."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from medssl.errors import ConfigError, OutputExistsError
from medssl.models import load_encoder
from medssl.submit.export import HEADER, build_metadata, export_openbhb
from medssl.submit.templates import ARCH_TEMPLATES, arch_template, template_path


def test_files_and_their_content(tiny_submission: Path, tiny_run: Path) -> None:
    assert sorted(p.name for p in tiny_submission.iterdir()) == ["estimator.py", "metadata.pkl", "weights.pth"]
    backbone, card = load_encoder(tiny_run)
    weights = torch.load(tiny_submission / "weights.pth", weights_only=True)
    assert set(weights["model"]) == set(backbone.state_dict())
    for key, value in backbone.state_dict().items():
        assert torch.equal(weights["model"][key], value)
    meta = pd.read_pickle(tiny_submission / "metadata.pkl")
    assert meta["architecture"] == "tiny_cnn3d"
    assert meta["backbone_kwargs"] == {"in_channels": 1, "width": 4}
    assert meta["modality"] == "vbm" and meta["num_features"] == 32 and meta["batch_size"] == 8
    assert meta["preprocessing"] == {"shape": [16, 16, 16], "resize": "crop_pad", "normalize": "zscore"}


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tiny_run: Path, tmp_path: Path) -> None:
    out = export_openbhb(tiny_run, tmp_path / "sub", batch_size=2, allow_grid_mismatch=True)
    before = (out / "estimator.py").read_text()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_openbhb(tiny_run, out, allow_grid_mismatch=True)
    export_openbhb(tiny_run, out, batch_size=3, overwrite=True, allow_grid_mismatch=True)
    assert pd.read_pickle(out / "metadata.pkl")["batch_size"] == 3 and (out / "estimator.py").read_text() == before
    with pytest.raises(ConfigError, match="pretrained on 'vbm'"):
        export_openbhb(tiny_run, tmp_path / "other", modality="quasiraw", allow_grid_mismatch=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temporary left behind


def test_card_checks(tiny_run: Path) -> None:
    card = json.loads((tiny_run / "encoder.json").read_text())
    source = tiny_run / "encoder.pt"
    with pytest.raises(ConfigError, match="1..10000 features"):
        build_metadata({**card, "num_features": 10001}, None, 8, source, True)
    assert build_metadata({**card, "num_features": 10000}, None, 8, source, True)["num_features"] == 10000
    with pytest.raises(ConfigError, match="resize"):
        build_metadata({**card, "preprocessing": {"resize": "area"}}, None, 8, source, True)
    with pytest.raises(ConfigError, match="--modality"):
        build_metadata({**card, "modality": None}, None, 8, source, True)
    assert build_metadata({**card, "modality": None}, "quasiraw", 8, source, True)["modality"] == "quasiraw"
    with pytest.raises(ConfigError, match="no plain-torch template"):
        arch_template("vit_3d")


@pytest.mark.parametrize("name", ["runtime.py", *ARCH_TEMPLATES.values()])
def test_template_imports_are_covered_by_the_header(name: str) -> None:
    """Only the text below the marker is inlined, so each template's imports must already be in HEADER."""
    def imports(source: str) -> set[str]:
        found = set()
        for node in ast.parse(source).body:
            if isinstance(node, ast.Import):
                found |= {f"import {a.name}" + (f" as {a.asname}" if a.asname else "") for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.module.startswith("medssl"):
                found |= {f"from {node.module} import {a.name}" for a in node.names}
        return found

    assert imports(template_path(name).read_text()) <= imports(HEADER.format(
        version="", architecture="", modality="", num_features=0))
