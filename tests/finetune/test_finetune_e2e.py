"""End to end on CPU: the command, the numbers it reports, the splits it used, its figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medssl.cli import main

from finetune_helpers import overrides


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSSL_PROGRESS", "0")


def test_full_finetune_scratch_and_encoder(scz_manifest: Path, clean_encoder: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ft"
    args = ["finetune", "configs/finetune/scz.yaml",
            *overrides(scz_manifest, out, f"init=[scratch,{clean_encoder.parent}]", "finetune.repeats=2",
                       "finetune.recipe=full")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "auc_external" in printed and f"report: {out / 'report.md'}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == "scratch" and metrics["inits"] == ["scratch", str(clean_encoder)]
    assert metrics["classes"] == ["control", "scz"]
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG" and (out / "config.yaml").is_file()
    checks = {c["init"]: c for c in metrics["leakage"]["checks"]}
    assert checks["yaware"]["checked"] and checks["yaware"]["overlap"] == []

    # every reported AUC equals sklearn's on the written predictions, and the summary is their mean
    preds = pd.read_csv(out / "predictions.csv", dtype={"participant_id": str})
    for result in metrics["results"]:
        for part, key in (("internal_test", "auc_internal"), ("external_test", "auc_external")):
            values = []
            for run in result["runs"]:
                p = preds[(preds.init == result["init"]) & (preds.seed == run["seed"]) & (preds.part == part)]
                values.append(roc_auc_score(p.label == "scz", p.p_scz))
                assert run[key] == pytest.approx(values[-1])
            assert result[key]["mean"] == pytest.approx(np.mean(values))
            assert result[key]["std"] == pytest.approx(np.std(values, ddof=1))
    assert metrics["auc_internal"] == metrics["results"][0]["auc_internal"]

    # report.md: the command, one row per init with the mean AUC and its 95 % CI, the figures
    report = (out / "report.md").read_text()
    assert f"Command: `medssl finetune configs/finetune/scz.yaml data.source={scz_manifest}" in report
    for result in metrics["results"]:
        auc = result["auc_internal"]
        assert f"| {result['init']} | all ({result['n_train']}) | {auc['mean']:.3f} [{auc['ci95'][0]:.3f}, " \
               f"{auc['ci95'][1]:.3f}] |" in report
    assert "![roc](roc.png)" in report and "yaware: no overlap" in report

    # external sites (manifest split) never in training: predictions only on test parts, counts add up
    manifest = pd.read_csv(scz_manifest, dtype=str)
    ext = manifest[manifest.split == "external_test"]
    assert not set(ext.site) & set(manifest[manifest.split == "train"].site)
    run_counts = metrics["results"][0]["runs"][0]["label_counts"]
    assert sum(run_counts["external_test"].values()) == len(ext)
    assert sum(run_counts["train"].values()) + sum(run_counts["validation"].values()) == \
        (manifest.split == "train").sum()
    assert set(preds[preds.part == "external_test"].participant_id) == set(ext.participant_id)

    # the same command again resumes a finished run: nothing is retrained, the outputs stay the same
    before = (out / "metrics.json").read_text()
    assert main(args) == 0
    assert (out / "metrics.json").read_text() == before
    # another config into the same folder is refused without --overwrite
    assert main([*args, "finetune.repeats=3"]) == 2


def test_linear_recipe_label_fraction_curve(scz_manifest: Path, clean_encoder: Path, tmp_path: Path) -> None:
    from medssl.config import load_config
    from medssl.config import FinetuneConfig
    from medssl.pipelines.finetune import finetune

    cfg = load_config("configs/finetune/scz.yaml", overrides(
        scz_manifest, tmp_path / "lin", f"init=[scratch,{clean_encoder}]", "finetune.recipe=linear",
        "train.n_labelled=[8,14]", "finetune.repeats=2"), FinetuneConfig)
    metrics = json.loads((finetune(cfg) / "metrics.json").read_text())
    grid = [(r["init"], r["n_labelled"], r["n_train"]) for r in metrics["results"]]
    assert grid == [("scratch", 8, 8), ("scratch", 14, 14), ("yaware", 8, 8), ("yaware", 14, 14)]
    assert all(run["C"] in cfg.finetune.linear_C for r in metrics["results"] for run in r["runs"])
    assert metrics["figures"]["label_fraction"] == "label_fraction.png"
    assert (tmp_path / "lin" / "label_fraction.png").read_bytes()[:4] == b"\x89PNG"
    counts = metrics["results"][0]["runs"][0]["label_counts"]["train"]
    assert abs(counts["control"] - counts["scz"]) <= 1  # stratified subsample


def test_partial_recipe_with_deep_ensemble(scz_manifest: Path, clean_encoder: Path, tmp_path: Path) -> None:
    from medssl.config import load_config
    from medssl.config import FinetuneConfig
    from medssl.pipelines.finetune import finetune

    cfg = load_config("configs/finetune/scz.yaml", overrides(
        scz_manifest, tmp_path / "ens", f"init={clean_encoder}", "finetune.recipe=partial",
        "finetune.partial_stages=1", "finetune.ensemble=2", "finetune.repeats=1", "train.epochs=1"),
        FinetuneConfig)
    metrics = json.loads((finetune(cfg) / "metrics.json").read_text())
    (run,) = metrics["results"][0]["runs"]
    assert len(run["members"]) == 2 and metrics["ensemble"] == 2
    assert metrics["trainable_prefixes"]["yaware"] == ["features.9.", "features.10."]
    assert metrics["auc_internal"]["ci95"] is None  # one repeat: no interval


def test_an_interrupted_run_resumes_to_the_uninterrupted_outputs(scz_manifest: Path, clean_encoder: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after its first (init, size, fold, repeat) unit, with the second unit half written: the
    rerun keeps the finished unit, redoes the rest, and writes what an uninterrupted run writes."""
    import medssl.pipelines.finetune as ft
    from medssl.config import load_config

    def cfg(out: Path) -> ft.FinetuneConfig:
        return load_config("configs/finetune/scz.yaml", overrides(
            scz_manifest, out, f"init={clean_encoder}", "finetune.recipe=partial", "finetune.partial_stages=1",
            "finetune.repeats=2", "train.epochs=2"), ft.FinetuneConfig)

    whole = ft.finetune(cfg(tmp_path / "whole"))
    real, calls = ft._run_once, []

    def killed_at_second(*args: object, **kwargs: object) -> object:
        calls.append(args[7])  # the repeat's seed
        if len(calls) == 2:  # the unit dies mid-training, leaving an engine checkpoint behind
            stale = args[8] / "member0" / "checkpoints" / "last.pt"  # the unit's working folder
            stale.parent.mkdir(parents=True)
            stale.write_bytes(b"half-written")
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "_run_once", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(cfg(tmp_path / "cut"))
    monkeypatch.setattr(ft, "_run_once", lambda *a, **k: calls.append(a[7]) or real(*a, **k))
    cut = ft.finetune(cfg(tmp_path / "cut"))
    assert calls == [0, 1, 1]  # the finished unit (seed 0) was not run again
    for name in ("metrics.json", "predictions.csv"):
        a, b = (whole / name).read_text(), (cut / name).read_text()
        assert a.replace(str(tmp_path / "whole"), "") == b.replace(str(tmp_path / "cut"), ""), name
