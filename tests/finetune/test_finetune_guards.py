"""The leakage guard and encoder initialisation (strict keys, the weights really loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from finetune_helpers import make_encoder, overrides, write_pretrain_manifest

from medssl.config import load_config
from medssl.errors import ConfigError, DataError, LeakageError
from medssl.config import FinetuneConfig
from medssl.pipelines.finetune import finetune
from medssl.pipelines.finetune_init import build_classifier, guard_leakage, open_task_cohort, resolve_inits


def _cfg(manifest: Path, out: Path, *extra: str) -> FinetuneConfig:
    return load_config("configs/finetune/scz.yaml", overrides(manifest, out, *extra), FinetuneConfig)


@pytest.mark.parametrize("same_ids,study,match", [
    (True, "openbhb", "participant_id"),  # the same participants
    (False, "synth-scz", "study"),  # the same study under other ids (ABIDE in OpenBHB vs an ASD cohort)
])
def test_leakage_guard_refuses_overlapping_cohorts(scz_manifest: Path, tmp_path: Path, same_ids: bool,
                                                   study: str, match: str) -> None:
    pre = write_pretrain_manifest(scz_manifest, f"pre_{same_ids}.csv", same_ids=same_ids, study=study)
    enc = make_encoder(tmp_path / "enc", str(pre))
    with pytest.raises(LeakageError, match=match):
        finetune(_cfg(scz_manifest, tmp_path / "out", f"init={enc}"))
    assert not (tmp_path / "out").exists()  # refused before anything is written

    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}", "finetune.leakage=warn")
    with pytest.warns(UserWarning, match=match):
        (record,) = guard_leakage(resolve_inits(cfg), open_task_cohort(cfg.data), cfg)
    assert record["checked"] and record["mode"] == "warn" and match in record["overlap"][0]


def test_leakage_override_is_recorded_in_outputs(scz_manifest: Path, tmp_path: Path) -> None:
    enc = make_encoder(tmp_path / "enc", str(scz_manifest))  # pretrained on the clinical cohort itself
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}", "finetune.leakage=warn",
               "finetune.recipe=linear", "finetune.repeats=1")
    with pytest.warns(UserWarning, match="leakage"):
        out = finetune(cfg)
    leakage = json.loads((out / "metrics.json").read_text())["leakage"]
    assert leakage["mode"] == "warn" and leakage["checks"][0]["overlap"]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["finetune"]["leakage"] == "warn" and resolved["_run"]["leakage"][0]["overlap"]


def test_unknown_pretraining_cohort_needs_a_decision(scz_manifest: Path, tmp_path: Path) -> None:
    enc = make_encoder(tmp_path / "enc", None)
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}")
    with pytest.raises(ConfigError, match="finetune.pretrain_cohort"):
        guard_leakage(resolve_inits(cfg), open_task_cohort(cfg.data), cfg)


@pytest.mark.parametrize("recipe", ["linear", "partial", "full"])
def test_init_loads_the_encoder_weights(scz_manifest: Path, tmp_path: Path, recipe: str) -> None:
    enc = make_encoder(tmp_path / "enc", None, seed=7)
    saved = torch.load(enc, weights_only=True)
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}", f"finetune.recipe={recipe}")
    (init,) = resolve_inits(cfg)
    method = build_classifier(init, cfg, 2, None)
    state = method.backbone.state_dict()
    assert state.keys() == saved.keys()
    assert torch.equal(method.backbone.features[0].weight, saved["features.0.weight"])  # first conv
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    scratch = build_classifier(resolve_inits(_cfg(scz_manifest, tmp_path / "o", "init=scratch"))[0], cfg, 2, None)
    assert not torch.equal(scratch.backbone.features[0].weight, saved["features.0.weight"])


def test_encoder_with_mismatched_keys_is_refused(scz_manifest: Path, tmp_path: Path) -> None:
    enc = make_encoder(tmp_path / "enc", None)
    state = torch.load(enc, weights_only=True)
    state["features.0.renamed"] = state.pop("features.0.weight")
    torch.save(state, enc)
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}")
    with pytest.raises(DataError, match="missing keys"):
        build_classifier(resolve_inits(cfg)[0], cfg, 2, None)


def test_config_errors_before_work(scz_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ensemble"):
        finetune(_cfg(scz_manifest, tmp_path / "a", "finetune.recipe=linear", "finetune.ensemble=3"))
    with pytest.raises(ConfigError, match="n_labelled"):
        finetune(_cfg(scz_manifest, tmp_path / "b", "train.n_labelled=[30,10]"))
    with pytest.raises(DataError, match="asd"):
        finetune(_cfg(scz_manifest, tmp_path / "c", "task.positive=asd"))
    with pytest.raises(ConfigError, match="synthetic:scz"):
        finetune(_cfg(scz_manifest, tmp_path / "d", "data.source=synthetic:mdd"))
    with pytest.raises(ConfigError, match="data.cache=device is read by medssl pretrain only"):
        finetune(_cfg(scz_manifest, tmp_path / "e", "data.cache=device"))
    assert not (tmp_path / "e").exists()


def test_synthetic_clinical_cohort_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.pipelines.finetune_init import ensure_clinical_synthetic

    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path))
    root = ensure_clinical_synthetic("bd", 24, (8, 8, 8))
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    assert ensure_clinical_synthetic("bd", 24, (8, 8, 8)) == root
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    cfg = load_config("configs/finetune/bd.yaml", ["data.synthetic_subjects=24", "data.synthetic_shape=[8,8,8]"],
                      FinetuneConfig)
    table = open_task_cohort(cfg.data).table
    assert set(table.diagnosis) == {"bd", "control"} and set(table.split) == {
        "train", "internal_test", "external_test"}


def test_the_encoders_recorded_resize_prepares_the_clinical_volumes(scz_manifest: Path, tmp_path: Path) -> None:
    """An encoder pretrained on resampled volumes must see resampled clinical volumes too (was: the
    config's default crop/pad, up to 3.9 z-units off on the same scan)."""
    from medssl.models.encoder_io import card_path

    enc = make_encoder(tmp_path / "enc", None)
    card = json.loads(card_path(enc).read_text())
    card["preprocessing"]["resize"] = "resample"
    card_path(enc).write_text(json.dumps(card))
    cfg = _cfg(scz_manifest, tmp_path / "out", f"init={enc}", "finetune.recipe=full")
    with pytest.warns(UserWarning, match="resized by 'resample'"):
        (init,) = resolve_inits(cfg)
    init.prepare(cfg, open_task_cohort(cfg.data), labels=None, device=torch.device("cpu"))  # type: ignore[arg-type]
    assert init.dataset.resize == "resample" and init.dataset.normalize == "zscore"
    (scratch,) = resolve_inits(_cfg(scz_manifest, tmp_path / "o2", "init=scratch", "finetune.recipe=full"))
    scratch.prepare(cfg, open_task_cohort(cfg.data), labels=None, device=torch.device("cpu"))  # type: ignore[arg-type]
    assert scratch.dataset.resize == cfg.data.resize == "crop_pad"


def test_a_failure_before_training_leaves_no_folder(scz_manifest: Path, tmp_path: Path) -> None:
    """A corrupt encoder is found before OUT is touched: no folder, and --overwrite keeps the previous run."""
    enc = make_encoder(tmp_path / "enc", None)
    enc.write_text("not weights\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="is not a weights file"):
        finetune(_cfg(scz_manifest, out, f"init={enc}", "finetune.leakage=warn"))
    assert not out.exists()
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a finished earlier run
    with pytest.raises(DataError, match="is not a weights file"):
        finetune(_cfg(scz_manifest, out, f"init={enc}", "finetune.leakage=warn"), overwrite=True)
    assert (out / "metrics.json").read_text() == "{}"


def test_a_changed_config_is_refused_without_offering_a_resume_flag_finetune_lacks(  # type: ignore[no-untyped-def]
        tmp_path) -> None:
    import pytest

    from medssl.errors import OutputExistsError
    from medssl.pipelines.common import prepare_run_dir

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text("a: 1\n")
    with pytest.raises(OutputExistsError, match=r"differs in: a\)\. Pass --overwrite") as refused:
        prepare_run_dir(run, {"a": 2}, None, False, state="models")
    assert "--resume" not in str(refused.value)
    with pytest.raises(OutputExistsError, match="Pass --resume"):
        prepare_run_dir(run, {"a": 2}, False, False, state="models")
