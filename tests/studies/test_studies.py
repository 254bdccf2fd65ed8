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
    assert len(results["hypotheses"]) == 7 and all(h["held"] in (True, False) for h in results["hypotheses"])
    assert (regression.out / "figures" / "frontier.png").stat().st_size > 1000


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
    with pytest.raises(ConfigError, match=r"evaluate.batchsize is not an option of the evaluation; use batch_size"):
        load_study(EXP / "regression_cpu.yaml", ["evaluate.batchsize=4"])  # was a TypeError after arm 1 trained


def test_the_evaluate_options_are_the_evaluations_own_keywords() -> None:
    import inspect

    from medssl.config.study import EVALUATE_OPTIONS
    from medssl.pipelines.evaluate import evaluate

    keywords = {name for name, p in inspect.signature(evaluate).parameters.items()
                if p.kind is p.KEYWORD_ONLY}
    set_by_the_study = {"overwrite", "progress", "baselines"}
    assert set(EVALUATE_OPTIONS) == keywords - set_by_the_study


def test_every_experiment_config_resolves(tmp_path: Path) -> None:
    from medssl.config import pretrain_config

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
                        lambda cfg, out, overwrite, command, budget_s: seen.update(
                            cfg=cfg, out=out, command=command, budget_s=budget_s)
                        or type("R", (), {"markdown": "", "out": out})())
    args = parser.parse_args(["study", str(EXP / "regression_cpu.yaml"), "seeds=[0]", "--out", "x y",
                              "--budget-minutes", "2.5"])
    assert args.func(args) == 0
    assert seen["cfg"].seeds == [0] and seen["out"] == "x y" and seen["budget_s"] == 150.0
    assert seen["command"] == (f"medssl study {EXP / 'regression_cpu.yaml'} 'seeds=[0]' --out 'x y' "
                               "--budget-minutes 2.5")


def test_budget_starts_a_run_only_while_the_time_left_exceeds_the_longest_run() -> None:
    from medssl.pipelines.studies.common import Budget

    now = [0.0]
    budget = Budget(10.0, clock=lambda: now[0])

    def run(seconds: float) -> str:
        now[0] += seconds
        return "done"

    assert budget.allows("a") and budget.timed(run, 4.0) == "done"  # 6 s left > longest 4 s
    assert budget.allows("b") and budget.timed(run, 3.0) == "done"  # 3 s left, not > 4 s
    assert not budget.allows("c") and budget.skipped == ["c"]
    assert Budget(None).allows("anything") and Budget(None).left() == float("inf")


def test_a_study_out_of_time_reports_what_it_ran_and_lists_the_rest(  # noqa: ANN001
        tmp_path: Path, monkeypatch) -> None:
    """Seed-major order: the first arm of seed 0 runs, every other run is listed as not run."""
    from medssl.pipelines.studies import common

    monkeypatch.setattr(common.Budget, "left", lambda self: 1.0 if self.longest == 0 else -1.0)
    cfg = load_study(EXP / "regression_cpu.yaml", micro("seeds=[0,1]"))
    result = run_study(cfg, tmp_path / "study", command="pytest", budget_s=60.0)
    assert result.runs[["arm", "seed"]].to_numpy().tolist() == [["simclr", 0]]
    summary = (result.out / "summary.md").read_text()
    assert "Not run, for lack of time in the budget: yaware seed 0, thr seed 0" in summary
    assert json.loads((result.out / "results.json").read_text())["skipped"][-1] == "supervised seed 1"


def test_fairkl_claim_needs_both_bounds_and_says_when_the_margin_beats_seed_noise() -> None:
    from medssl.pipelines.studies.regression import fairkl_at_small_cost

    def stats(rows: dict[str, tuple[float, float, float, float]]) -> pd.DataFrame:
        return pd.DataFrame([{"arm": a, "bacc_site_mean": b, "bacc_site_std": bs, "mae_external_mean": m,
                              "mae_external_std": ms} for a, (b, bs, m, ms) in rows.items()])

    chance = 0.1  # bounds: BAcc <= 0.15, external MAE <= 1.1 x 10 = 11
    exp = (0.6, 0.01, 10.0, 0.1)
    fair = ["exp_fairkl_l1", "exp_fairkl_l4"]
    v = fairkl_at_small_cost(stats({"exp": exp, "exp_fairkl_l1": (0.3, 0.01, 10.2, 0.1),
                                    "exp_fairkl_l4": (0.12, 0.01, 12.0, 0.1)}), fair, chance)
    assert v["held"] is False  # one arm misses the BAcc bound, the other the MAE bound
    v = fairkl_at_small_cost(stats({"exp": exp, "exp_fairkl_l1": (0.3, 0.01, 10.2, 0.1),
                                    "exp_fairkl_l4": (0.12, 0.01, 10.5, 0.1)}), fair, chance)
    assert v["held"] and v["beyond_noise"]  # room 0.03 > sd 0.01; room 0.5 > pooled sd 0.141
    v = fairkl_at_small_cost(stats({"exp": exp, "exp_fairkl_l1": (0.14, 0.05, 10.5, 0.1)}), fair[:1], chance)
    assert v["held"] and not v["beyond_noise"]  # BAcc room 0.01 < its seed sd 0.05


def test_one_seed_makes_no_claim_about_noise() -> None:
    from medssl.pipelines.studies.common import verdict_lines

    stats = aggregate(pd.DataFrame({"arm": ["a", "b"], "x": [1.0, 4.0]}), ["arm"], ["x"])
    v = compare(stats, "x", "a", "b")
    assert v["held"] and v["beyond_noise"] is None and "one seed" in v["detail"]
    (line,) = verdict_lines([{"hypothesis": "a beats b", **v}])
    assert line.startswith("- **HELD (one seed: noise unknown)**")


@pytest.fixture(scope="module")
def hard_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data import make_synthetic_cohort

    return make_synthetic_cohort(tmp_path_factory.mktemp("hard") / "healthy", n_subjects=60, n_sites=4,
                                 n_external_sites=2, shape=(16, 16, 16), preset="hard", modalities=["vbm"])


GPU_SMALL = {  # the reduced CPU check each _gpu.yaml documents, made smaller still for CI
    "regression": [],
    "transfer": ["transfer.finetune.train.epochs=1", "transfer.finetune.train.n_labelled=null",
                 "transfer.n_subjects=60"],
    "sensitivity": [],
}


@pytest.mark.parametrize("study", sorted(GPU_SMALL))
def test_gpu_configs_run_at_reduced_size_on_an_existing_cohort(study: str, hard_cohort: Path, tmp_path: Path) -> None:
    """Every arm (FairKL's lambda sweep included) of each gpu-scale study runs on the CPU."""
    cfg = load_study(EXP / f"{study}_gpu.yaml", [
        f"cohort.source={hard_cohort}", "seeds=[0]", "pretrain.model.name=tiny_cnn3d", "pretrain.model.width=4",
        "pretrain.train.epochs=1", "pretrain.train.max_steps_per_epoch=1", "pretrain.data.num_workers=0",
        "evaluate.num_workers=0", "baselines=false", *GPU_SMALL[study]])
    result = run_study(cfg, tmp_path / study, command="pytest")
    done = set(result.runs["init" if study == "transfer" else "arm"])
    expected = set(cfg.arms) | ({"scratch"} if study == "transfer" else set())
    assert expected <= {Path(str(a)).name for a in done}, (expected, done)
    if study == "regression":
        assert {"exp_fairkl_lambda0.5", "exp_fairkl_lambda1", "exp_fairkl_lambda4"} <= done
