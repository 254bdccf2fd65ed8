"""``finetune init=`` takes a folder written by ``medssl export-hub`` or an ``hf://ORG/NAME`` reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_helpers import make_encoder, overrides

import medssl.models.encoder_io as encoder_io
from medssl.config import load_config
from medssl.errors import ConfigError
from medssl.config import FinetuneConfig
from medssl.pipelines.finetune_init import build_classifier, guard_leakage, open_task_cohort, resolve_inits
from medssl.pipelines.hub_export import export_hub


def _cfg(manifest: Path, out: Path, *extra: str) -> FinetuneConfig:
    return load_config("configs/finetune/scz.yaml", overrides(manifest, out, *extra), FinetuneConfig)


@pytest.fixture()
def exported(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    enc = make_encoder(tmp_path / "run", None, seed=5)
    return export_hub(tmp_path / "run", tmp_path / "shared_yaware"), torch.load(enc, weights_only=True)


@pytest.mark.parametrize("reference,name", [("folder", "shared_yaware"), ("hf://org/yaware-tiny", "org--yaware-tiny")])
def test_init_from_an_exported_folder_or_a_hub_reference(  # type: ignore[no-untyped-def]
        scz_manifest: Path, tmp_path: Path, exported, reference: str, name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, saved = exported
    fetched: list[str] = []
    monkeypatch.setattr(encoder_io, "fetch_hub_encoder", lambda ref: (fetched.append(ref), folder)[1])
    source = str(folder) if reference == "folder" else reference
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={source}", "finetune.recipe=full")
    (init,) = resolve_inits(cfg)
    assert init.name == name and init.shape == [16, 16, 16]
    assert fetched == ([] if reference == "folder" else [reference])
    state = build_classifier(init, cfg, 2, None).backbone.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    # a shared encoder carries no pretraining cohort: the leakage guard asks for it
    with pytest.raises(ConfigError, match="finetune.pretrain_cohort"):
        guard_leakage([init], open_task_cohort(cfg.data), cfg)
