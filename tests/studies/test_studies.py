"""The three studies at micro size: every arm and seed present with finite numbers; tables, verdicts, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.errors import ConfigError, OutputExistsError
from medssl.pipelines.studies import load_study, run_study
from medssl.pipelines.studies.common import aggregate, compare
from tests.studies.conftest import micro

ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "experiments"


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    import torch

    torch.set_num_threads(1)
    cfg = load_study(EXP / "regression_cpu.yaml", micro("seeds=[0,1]"))
    return run_study(cfg, tmp_path_factory.mktemp("reg") / "study", command="pytest")


def test_regression_every_arm_and_seed_finite(regression) -> None:  # noqa: ANN001
    runs = pd.read_csv(regression.out / "runs.csv")
    arms = ["simclr", "yaware", "thr", "exp", "exp_fairkl", "supervised"]
    assert sorted(map(tuple, runs[["arm", "seed"]].to_numpy().tolist())) == sorted((a, s) for a in arms for s in (0, 1))
    keys = ["mae_internal", "mae_external", "bacc_site", "challenge_score"]
    assert np.isfinite(runs[keys].to_numpy()).all()
    # challenge score = BAcc^0.3 * MAE_ext, recomputed from the run's own numbers
    np.testing.assert_allclose(runs.challenge_score, runs.bacc_site ** 0.3 * runs.mae_external, rtol=1e-9)
    table = pd.read_csv(regression.out / "table.csv")
    assert list(table.arm) == arms and (table.n_seeds == 2).all()
    md = (regression.out / "table.md").read_text()
    assert all(f"| {a} |" in md for a in arms)
    summary = (regression.out / "summary.md").read_text()
    assert "command: `pytest`" in summary and "FairKL(site) lowers the site BAcc" in summary
    assert (regression.out / "figures" / "regression.png").stat().st_size > 1000
    results = json.loads((regression.out / "results.json").read_text())
    assert len(results["hypotheses"]) == 6 and all(h["held"] in (True, False) for h in results["hypotheses"])


def test_table_is_mean_and_sample_std_of_the_runs(regression) -> None:  # noqa: ANN001
    runs = pd.read_csv(regression.out / "runs.csv")
    table = pd.read_csv(regression.out / "table.csv").set_index("arm")
    for arm, part in runs.groupby("arm"):
        values = part.mae_external.to_numpy()
        assert table.at[arm, "mae_external_mean"] == pytest.approx(values.sum() / len(values))
        sd = np.sqrt(((values - values.mean()) ** 2).sum() / (len(values) - 1))
        assert table.at[arm, "mae_external_std"] == pytest.approx(sd)


def test_rerun_resumes_without_retraining_and_refuses_another_config(regression) -> None:  # noqa: ANN001
    encoder = regression.out / "runs" / "seed0" / "simclr" / "encoder.pt"
    before = encoder.stat().st_mtime_ns
    again = run_study(load_study(EXP / "regression_cpu.yaml", micro("seeds=[0,1]")), regression.out,
                      command="pytest")
    assert encoder.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again.stats, regression.stats)
    with pytest.raises(OutputExistsError, match="another study"):
        run_study(load_study(EXP / "regression_cpu.yaml", micro("seeds=[0]")), regression.out)


def test_compare_verdicts_and_noise() -> None:
    runs = pd.DataFrame({"arm": ["a", "a", "b", "b"], "x": [1.0, 3.0, 4.0, 4.0]})
    stats = aggregate(runs, ["arm"], ["x"])
    v = compare(stats, "x", "a", "b")  # a: 2 ± 1.414, b: 4 ± 0 -> gap 2 > 1.414
    assert v["held"] and v["beyond_noise"] and v["gap"] == pytest.approx(2.0)
    assert v["noise"] == pytest.approx(np.sqrt(2.0))
    v = compare(stats, "x", "a", "b", lower_is_better=False)
    assert not v["held"] and "in favour of b" in v["detail"]
    assert compare(stats, "x", "a", "missing")["held"] is None


def test_sensitivity_grid_complete(tmp_path: Path) -> None:
    cfg = load_study(EXP / "sensitivity_cpu.yaml", micro("seeds=[0,1]", "grid.sigma=[1.0,5.0]", "grid.tau=[0.1]"))
    result = run_study(cfg, tmp_path / "sens")
    runs = result.runs
    assert len(runs) == 2 * 2 * 1 * 2 and np.isfinite(runs.mae_external).all()
    assert set(zip(runs.arm, runs.sigma)) == {(a, s) for a in ("yaware", "exp") for s in (1.0, 5.0)}
    assert all(h["held"] in (True, False) for h in result.hypotheses)  # 2 seeds, 2 sigmas in [1, 5]
    # the grid point was really applied: the run's config holds its sigma and tau
    import yaml

    saved = yaml.safe_load((result.out / "runs" / "seed1" / "exp_sigma5_tau0.1" / "config.yaml").read_text())
    assert saved["loss"]["sigma"] == 5.0 and saved["loss"]["temperature"] == 0.1 and saved["train"]["seed"] == 1
    for name in ("sensitivity_mae_external.png", "sensitivity_lines.png"):
        assert (result.out / "figures" / name).is_file()


def test_transfer_every_init_seed_and_size(tmp_path: Path) -> None:
    cfg = load_study(EXP / "transfer_cpu.yaml", micro(
        "seeds=[0,1]", "transfer.tasks=[scz]", "transfer.n_subjects=48",
        "transfer.finetune.train.epochs=1", "transfer.finetune.train.n_labelled=[8,16]",
        "transfer.finetune.train.batch_size=4", "transfer.finetune.train.device=cpu",
        "transfer.finetune.train.max_steps_per_epoch=2"))
    cfg.arms = {k: cfg.arms[k] for k in ("yaware", "genesis")}
    result = run_study(cfg, tmp_path / "tr")
    runs = result.runs
    inits = {"scratch", "yaware", "genesis"}
    assert {(i, s, n) for i, s, n in zip(runs.init, runs.seed, runs.n_labelled)} == \
        {(i, s, n) for i in inits for s in (0, 1) for n in (8, 16)}
    assert np.isfinite(runs[["auc_internal", "auc_external"]].to_numpy()).all()
    assert ((runs.auc_internal >= 0) & (runs.auc_internal <= 1)).all()
    assert set(result.stats.init) == inits and (result.stats.n_seeds == 2).all()
    assert (result.out / "figures" / "transfer_label_fraction.png").is_file()


def test_load_study_rejects_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'arms' is empty"):
        load_study(None, ["study=regression"])
    with pytest.raises(ConfigError, match="seeds"):
        load_study(EXP / "regression_cpu.yaml", ["seeds=[0,0]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_study(EXP / "regression_cpu.yaml", ["sedes=[0]"])
    with pytest.raises(ConfigError, match="arms.simclr .*unknown key 'train.epoch'"):  # caught when read
        load_study(EXP / "regression_cpu.yaml", ["pretrain.train.epoch=1"])
    with pytest.raises(ConfigError, match="arms.yaware .*unknown key 'loss.sigm'"):  # not after arm 1 trained
        load_study(EXP / "regression_cpu.yaml", ["arms.yaware.loss.sigm=2.0"])


def test_every_experiment_config_resolves(tmp_path: Path) -> None:
    from medssl.pipelines.studies.config import pretrain_config

    for path in sorted(EXP.glob("*.yaml")):
        cfg = load_study(path)
        for spec in cfg.arms.values():
            pretrain_config(cfg, spec, tmp_path, 0, tmp_path / "r")


def test_study_command_records_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.commands import study

    parser = argparse.ArgumentParser(prog="medssl")
    study.register(parser.add_subparsers())
    seen = {}
    monkeypatch.setattr("medssl.pipelines.studies.run_study",
                        lambda cfg, out, overwrite, command: seen.update(cfg=cfg, out=out, command=command)
                        or type("R", (), {"markdown": "", "out": out})())
    args = parser.parse_args(["study", str(EXP / "regression_cpu.yaml"), "seeds=[0]", "--out", "x y"])
    assert args.func(args) == 0
    assert seen["cfg"].seeds == [0] and seen["out"] == "x y"
    assert seen["command"] == f"medssl study {EXP / 'regression_cpu.yaml'} 'seeds=[0]' --out 'x y'"
