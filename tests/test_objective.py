"""The ``objective:`` section: what is learned survives a change of component, and a component that
needs a label or a bias it is not given is refused when the config is read (issue: a renamed loss
silently trained without labels)."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from medssl.cli import main
from medssl.config import PretrainConfig, load_config
from medssl.errors import ConfigError, MedsslWarning
from medssl.pipelines.pretrain import method_from_config
from medssl.registry import LOSSES

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs/debug/tiny_cpu.yaml")  # objective: {label: age}, loss yaware

# Written from the losses' definitions, not read from the code: which losses read y, which need it,
# which read the bias. A new registered loss must be classified here (first test).
LABELLED = {"supcon", "eps_supinfonce", "eps_supcon", "yaware", "thr", "exp", "fairkl"}
UNLABELLED = {"infonce", "dcl", "barlow_twins", "vicreg"}
NEEDS_LABEL = {"fairkl"}  # no instance-discrimination fallback
READS_BIAS = {"fairkl"}
LABEL_SETTINGS = {"unset": "objective.label=null", "age": "objective.label=age",
                  "instance": "objective.label=instance"}
BIAS_SETTINGS = {"unset": "objective.bias=null", "site": "objective.bias=site"}


def expected_refusal(loss: str, regularizer: str, label: str, bias: str) -> str | None:
    """The phrase of the ConfigError this combination must raise, or None when it is accepted."""
    parts = {loss} | ({regularizer} - {"none"})
    if parts & LABELLED and label == "unset":
        return "objective.label is not set"
    if parts & NEEDS_LABEL and label == "instance":
        return "cannot train without a label"
    if parts & READS_BIAS and bias == "unset":
        return "objective.bias is not set"
    return None


def overrides(loss: str, regularizer: str, label: str, bias: str) -> list[str]:
    return [f"loss.name={loss}", f"regularizer.name={regularizer}", LABEL_SETTINGS[label],
            BIAS_SETTINGS[bias]]


def test_every_registered_loss_is_classified() -> None:
    assert set(LOSSES.names()) == LABELLED | UNLABELLED


def test_the_renamed_loss_keeps_the_recipes_label() -> None:
    """``medssl pretrain tiny_cpu.yaml loss.name=exp``: L_exp on age, not an unsupervised run."""
    cfg = load_config(TINY, ["loss.name=exp"], PretrainConfig)
    assert cfg.loss == {"name": "exp"} and cfg.objective.label == "age"
    assert method_from_config(cfg).label == "age"


def test_fairkl_without_a_bias_is_refused_when_read_and_no_folder_is_written(  # type: ignore[no-untyped-def]
        tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(["pretrain", TINY, "loss.name=exp", "regularizer.name=fairkl", f"out={run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "objective.bias" in err[0], err
    assert not run.exists()


@pytest.mark.parametrize("loss,regularizer", list(itertools.product(
    sorted(LABELLED | UNLABELLED), ["none", "fairkl"])))
def test_matrix_of_losses_regularizers_and_labels(loss: str, regularizer: str) -> None:
    """Every (label, bias) setting: refused as the table says, else the loss gets batch[label] and
    batch[bias], weighted as objective.alpha * L + objective.lambda * R (computed here directly)."""
    g = torch.Generator().manual_seed(0)
    batch = {"age": 20 + 50 * torch.rand(6, generator=g), "site": torch.tensor([0, 1, 2, 0, 1, 2])}
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    for label, bias in itertools.product(LABEL_SETTINGS, BIAS_SETTINGS):
        args = [*overrides(loss, regularizer, label, bias), "objective.alpha=0.5", "objective.lambda=2.0"]
        refusal = expected_refusal(loss, regularizer, label, bias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MedsslWarning)  # unused label/bias: a warning, tested below
            if refusal:
                with pytest.raises(ConfigError, match=refusal):
                    load_config(TINY, args, PretrainConfig)
                continue
            cfg = load_config(TINY, args, PretrainConfig)
        method = method_from_config(cfg)
        y = batch["age"] if label == "age" else None
        site = batch["site"] if bias == "site" else None
        want = 0.5 * LOSSES.build(loss, **without_name(cfg.loss))(z1, z2, y, site)
        if regularizer != "none":
            want = want + 2.0 * LOSSES.build(regularizer, **without_name(cfg.regularizer))(z1, z2, y, site)
        got = method.embedding_loss(batch, [z1, z2])["loss"]
        torch.testing.assert_close(got, want, msg=f"{loss} + {regularizer}, label {label}, bias {bias}")


def without_name(spec: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in spec.items() if k != "name"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data import make_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort") / "healthy"
    make_synthetic_cohort(out, cohort="healthy", n_subjects=24, n_sites=3, n_external_sites=1,
                          shape=(16, 20, 16), seed=0, layout="hf")
    return out


@pytest.mark.parametrize("loss", sorted(LABELLED - NEEDS_LABEL))
@pytest.mark.parametrize("regularizer", ["none", "fairkl"])
def test_cli_runs_train_on_the_label_the_objective_names(loss: str, regularizer: str, cohort: Path,
                                                         tmp_path: Path) -> None:
    """Through the CLI overrides on the y-aware recipe: one step; config.yaml records the objective."""
    run = tmp_path / "run"
    code = main(["pretrain", TINY, f"data.source={cohort}", f"out={run}", f"loss.name={loss}",
                 f"regularizer.name={regularizer}", "objective.bias=site", "model.width=4",
                 "train.epochs=1", "train.max_steps_per_epoch=1", "train.batch_size=8",
                 "train.tensorboard=false"])
    assert code == 0
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["objective"] == {"label": "age", "bias": "site", "alpha": 1.0, "lambda": 1.0}
    assert resolved["loss"]["name"] == loss


def test_a_supervised_method_needs_a_label() -> None:
    base = ["method.name=supervised", "loss.name=none", "head.name=none"]
    with pytest.raises(ConfigError, match="method supervised"):
        load_config(TINY, [*base, "objective.label=null"], PretrainConfig)
    with pytest.raises(ConfigError, match="cannot train without a label"):
        load_config(TINY, [*base, "objective.label=instance"], PretrainConfig)
    assert method_from_config(load_config(TINY, base, PretrainConfig)).label == "age"


def test_an_unused_label_is_a_warning_and_instance_is_explicit() -> None:
    with pytest.warns(MedsslWarning, match="objective.label=age is read by no component"):
        load_config(TINY, ["loss.name=infonce"], PretrainConfig)
    cfg = load_config(TINY, ["loss.name=exp", "objective.label=instance"], PretrainConfig)
    assert method_from_config(cfg).label is None  # instance discrimination, asked for


def test_old_keys_move_over_with_one_warning_each(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("model: {name: tiny_cnn3d, width: 4}\n"
                   "loss: {name: exp, sigma: 2.0, label: age}\n"
                   "regularizer: {name: fairkl, kernel: rbf, lambda: 0.5, alpha: 2.0, bias: site}\n")
    with pytest.warns(MedsslWarning) as record:
        cfg = load_config(old, ["loss.name=thr"], PretrainConfig)  # renamed after the move: label kept
    assert sorted(str(w.message).split(" ")[0] for w in record) == [
        "loss.label", "regularizer.alpha", "regularizer.bias", "regularizer.lambda"]
    assert (cfg.objective.label, cfg.objective.bias, cfg.objective.alpha, cfg.objective.lam) == (
        "age", "site", 2.0, 0.5)
    assert cfg.loss == {"name": "thr"} and "bias" not in cfg.regularizer
    with pytest.raises(ConfigError, match="disagree"), warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsslWarning)
        load_config(old, ["loss.label=sex", "objective.label=age"], PretrainConfig)


def test_a_study_arm_written_the_old_way_is_moved_too(tmp_path: Path) -> None:
    from medssl.config import load_study

    study = tmp_path / "study.yaml"
    study.write_text("pretrain: {model: {name: tiny_cnn3d, width: 4}}\n"
                     "arms: {yaware: {loss: {name: yaware, label: age}}}\n")
    with pytest.warns(MedsslWarning, match="arms.yaware"):
        cfg = load_study(study, ["arms.yaware.loss.name=exp"])
    assert cfg.arms["yaware"] == {"loss": {"name": "exp"}, "objective": {"label": "age"}}


def test_the_cli_prints_a_moved_key_as_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["pretrain", TINY, "loss.label=age", "train.epochs=0"])  # stops at the range check
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == ("medssl: warning: loss.label in the overrides is now objective.label; moved it "
                      "(write objective: {label: age} to silence this)"), err
