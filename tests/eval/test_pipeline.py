"""``medssl evaluate`` / ``compare`` end to end on a small synthetic cohort with tiny encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.cli import main
from medssl.errors import OutputExistsError
from medssl.eval.cv import fixed_fold
from medssl.eval.features import Embedder
from medssl.eval.protocol import score_fold
from medssl.models import load_encoder, save_encoder
from medssl.registry import BACKBONES

SHAPE = (16, 20, 16)
REQUIRED = ("mae_internal", "rmse_internal", "mae_external", "bacc_site", "site_chance", "challenge_score",
            "challenge_score_version", "n_train", "n_internal", "n_external", "alignment", "uniformity")


def _save(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = BACKBONES.build("tiny_cnn3d", width=4)
    card = {"backbone": {"name": "tiny_cnn3d", "width": 4}, "input_shape": list(SHAPE), "modality": "vbm",
            "preprocessing": {"shape": list(SHAPE), "resize": "crop_pad", "normalize": "zscore"}}
    save_encoder(path / "encoder.pt", net, card)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from medssl.data import make_synthetic_cohort, open_cohort
    from medssl.pipelines.evaluate import evaluate

    root = tmp_path_factory.mktemp("evaluate")
    data = make_synthetic_cohort(root / "data", n_subjects=60, shape=SHAPE, seed=0)
    run = _save(root / "run_a", seed=0)
    metrics = evaluate(run, data, progress=False, baselines=True, baseline_features=64, alt_probes=("knn",))
    return {"root": root, "data": data, "run": run, "metrics": metrics, "cohort": open_cohort(data)}


def test_evaluate_writes_the_metrics_contract_and_report(world: dict) -> None:
    m, cohort = world["metrics"], world["cohort"]
    out = world["run"] / "eval"
    assert json.loads((out / "metrics.json").read_text())["mae_internal"] == pytest.approx(m["mae_internal"])
    for key in REQUIRED:
        assert m[key] is not None, key
    counts = cohort.table.split.value_counts()
    assert (m["n_train"], m["n_internal"], m["n_external"]) == (counts["train"], counts["internal_test"],
                                                                 counts["external_test"])
    assert m["site_chance"] == pytest.approx(1 / cohort.n_train_sites)
    assert m["challenge_score"] == pytest.approx(m["mae_external"] * m["bacc_site"] ** 0.3)
    assert set(m["baselines"]) == {"raw_voxels", "raw_voxels_combat", "encoder_combat"}
    assert m["alternative_probes"]["knn"]["label"] == "NOT the challenge protocol"
    for name in ("report.md", "site_bacc.png", "per_site_mae.png", "age_scatter.png", "embedding.png",
                 "predictions.csv", "per_site.csv"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "| raw_voxels_combat |" in report and "NOT the challenge protocol" in report


def test_evaluate_matches_embedder_features_and_keeps_weights_frozen(world: dict) -> None:
    """Independent path: Embedder on the raw volumes + the probes on the cohort's fixed fold."""
    cohort, m = world["cohort"], world["metrics"]
    volumes = np.stack([cohort.read(i) for i in range(len(cohort))])
    X = Embedder(encoder_path=str(world["run"]), device="cpu", preprocess=True).fit().transform(volumes)
    meta = cohort.table.assign(site=cohort.table.site_code)
    direct, _ = score_fold(X, meta, fixed_fold(cohort.table))
    assert direct["mae_internal"] == pytest.approx(m["mae_internal"], abs=1e-3)
    assert direct["bacc_site"] == pytest.approx(m["bacc_site"])
    from medssl.eval.frozen import state_digest

    assert state_digest(load_encoder(world["run"])[0]) == m["encoder_digest"]


def test_evaluate_refuses_to_overwrite(world: dict) -> None:
    from medssl.pipelines.evaluate import evaluate

    with pytest.raises(OutputExistsError):
        evaluate(world["run"], world["data"], progress=False)


def test_compare_cli_puts_runs_in_one_table_and_figure(world: dict, capsys: pytest.CaptureFixture) -> None:
    other = _save(world["root"] / "run_b", seed=1)
    out = world["root"] / "compare"
    args = ["compare", str(world["run"]), str(other / "encoder.pt"), "--data", str(world["data"]), "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert table.run.tolist() == ["run_a", "run_b"]
    assert table.mae_internal[0] == pytest.approx(world["metrics"]["mae_internal"])  # reused RUN/eval
    assert (out / "run_b" / "metrics.json").is_file() and not (out / "run_a").exists()
    assert (out / "comparison.png").stat().st_size > 10_000
    assert "| run_b |" in (out / "comparison.md").read_text() and "| run_b |" in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite: one-line error, exit 2
    assert "--overwrite" in capsys.readouterr().err


def test_compare_reuses_metrics_only_for_the_same_weights_and_settings(world: dict) -> None:
    """``compare`` used to reuse RUN/eval whenever the data and the CV scheme's name matched, e.g. 3-fold
    numbers for a 5-fold request, or a retrained encoder's old numbers."""
    import shutil

    from medssl.pipelines.evaluate import _reusable, eval_settings

    run, data = world["run"], world["data"]
    metrics = run / "eval" / "metrics.json"
    assert _reusable(metrics, run, data, eval_settings()) is not None
    assert _reusable(metrics, run, data, eval_settings(seed=1)) is None
    assert _reusable(metrics, run, data, eval_settings(cv="fixed", cv_kwargs={"n_folds": 3})) is None
    retrained = world["root"] / "run_retrained"
    shutil.copytree(run, retrained)
    _save(retrained, seed=5)  # new weights, the old eval folder left in place
    assert _reusable(retrained / "eval" / "metrics.json", retrained, data, eval_settings()) is None
