"""``medssl pretrain`` end to end: run folder, refusal to overwrite, SIGKILL + resume, 2-process DDP."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from multiproc import Commands, log_tail, loopback_interface

from medssl.config import PretrainConfig, load_config
from medssl.data.synthetic.generate import GENERATOR_VERSION
from medssl.errors import OutputExistsError
from medssl.models import load_encoder
from medssl.pipelines.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medssl.data import make_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort") / "healthy"
    make_synthetic_cohort(out, cohort="healthy", n_subjects=40, n_sites=4, n_external_sites=1,
                          shape=(16, 20, 16), seed=0, layout="hf")
    return out


def tiny(cohort: Path, out: Path, *extra: str) -> PretrainConfig:
    overrides = [f"data.source={cohort}", f"out={out}", "train.epochs=2", "train.batch_size=8",
                 "model.width=4", "train.tensorboard=false", *extra]
    return load_config(ROOT / "configs/debug/tiny_cpu.yaml", overrides, PretrainConfig)


def test_run_folder_contents_and_refusal(cohort: Path, tmp_path: Path) -> None:
    run = pretrain(tiny(cohort, tmp_path / "run", "train.probe_every=2"))
    assert {"config.yaml", "metrics.jsonl", "encoder.pt", "encoder.json", "checkpoints", "curves.png"} <= {
        p.name for p in run.iterdir()}
    backbone, card = load_encoder(run)
    assert card["backbone"] == {"name": "tiny_cnn3d", "width": 4}
    # the pretraining cohort, described without its path (what an exported model card shows)
    from medssl.data import open_cohort
    from medssl.data.synthetic.anatomy import load_anatomy
    from nibabel.affines import voxel_sizes

    table = open_cohort(cohort).table
    described = card["pretraining_cohort"]
    assert described["name"] == f"synthetic healthy cohort (medssl generator v{GENERATOR_VERSION}, seed 0)"
    train = table[table.split == "train"]
    assert described["n_scans"] == len(train) and described["n_sites"] == train.site.nunique() == 4
    assert described["voxel_size_mm"] == pytest.approx(voxel_sizes(load_anatomy((16, 20, 16)).affine), abs=1e-4)
    assert str(cohort) not in json.dumps(described)
    assert card["input_shape"] == [16, 20, 16] and card["loss"]["name"] == "yaware"
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["epoch"] == 2 and all("step" in r for r in records)
    assert records[-1]["epoch/probe_mae_age"] > 0 and 0 <= records[-1]["epoch/probe_bacc_site"] <= 1
    # same command again: the run is complete, resuming changes nothing
    before = torch.load(run / "encoder.pt", weights_only=True)
    pretrain(tiny(cohort, tmp_path / "run", "train.probe_every=2"))
    after = torch.load(run / "encoder.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # another config into the same folder is refused, naming what differs
    with pytest.raises(OutputExistsError, match="differs in: loss"):
        pretrain(tiny(cohort, tmp_path / "run", "loss.sigma=2.0"))


def test_a_run_stopped_before_training_starts_again(cohort: Path, tmp_path: Path) -> None:
    """A config error raised after config.yaml was written leaves nothing to protect: the fixed
    command runs without --overwrite; a folder with anything else in it is still refused."""
    from medssl.errors import ConfigError

    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="grad_cache_chunk"):
        pretrain(tiny(cohort, run, "method.name=byol", "loss.name=none", "train.grad_cache_chunk=4"))
    assert {p.name for p in run.iterdir()} == {"config.yaml"}
    pretrain(tiny(cohort, run, "train.epochs=1", "train.grad_cache_chunk=4"))
    assert (run / "encoder.pt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        pretrain(tiny(cohort, other))


CLI_ENV = {**os.environ, "MEDSSL_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medssl.cli", *args]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(cohort: Path, tmp_path: Path,
                                                          commands: Commands) -> None:
    args = [str(ROOT / "configs/debug/tiny_cpu.yaml"), f"data.source={cohort}", "train.epochs=6",
            "train.batch_size=8", "model.width=4", "train.tensorboard=false"]
    commands.start("straight", _cli("pretrain", *args, f"out={tmp_path / 'a'}"), CLI_ENV)
    killed = commands.start("killed", _cli("pretrain", *args, f"out={tmp_path / 'b'}"), CLI_ENV)
    ckpt = tmp_path / "b" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and killed.poll() is None:
        if time.monotonic() > deadline:
            commands.stop("killed")
            pytest.fail(f"no checkpoint within 120 s\n{log_tail(commands.log_path('killed'))}")
        time.sleep(0.05)
    commands.kill("killed")  # SIGKILL mid-run: after the first checkpoint, before the end
    assert commands.wait("killed", 30, expect=None) == -signal.SIGKILL, \
        f"the run ended before it could be killed\n{log_tail(commands.log_path('killed'))}"
    commands.run("resumed", _cli("pretrain", *args, f"out={tmp_path / 'b'}"), 240, env=CLI_ENV)
    commands.wait("straight", 240)
    a = torch.load(tmp_path / "a" / "encoder.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "encoder.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_two_process_gloo_ddp_run(cohort: Path, tmp_path: Path, commands: Commands) -> None:
    """``torchrun --nproc-per-node 2`` on CPU: both ranks train, rank 0 alone writes the run folder.

    ``--standalone`` binds its own rendezvous store on a free port, which the ranks then share (no port
    is chosen before it is bound)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "--tee", "3", "-m", "medssl.cli"]  # --tee: each rank's lines prefixed [rank], in the log
    args = ["pretrain", str(ROOT / "configs/debug/tiny_cpu.yaml"), f"data.source={cohort}", f"out={tmp_path / 'ddp'}",
            "train.batch_size=4", "model.width=4", "train.tensorboard=false"]
    env = {**CLI_ENV, "GLOO_SOCKET_IFNAME": loopback_interface()}
    commands.run("torchrun", [*torchrun, *args, "train.epochs=1"], 240, env=env)
    records = [json.loads(ln) for ln in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    # 30 training subjects / (4 per rank x 2 ranks) = 3 global steps, logged once (rank 0 only)
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3]
    backbone, _ = load_encoder(tmp_path / "ddp")
    assert all(torch.isfinite(p).all() for p in backbone.parameters())
    # --overwrite with more epochs: rank 1 must not resume from the old checkpoint that rank 0 is removing
    # (it would run one epoch fewer than rank 0, whose extra collectives would then wait for ever). What
    # keeps it from doing so: train_loop looks for the checkpoint only after wrapping the method in DDP,
    # whose constructor waits for rank 0, which has prepared the folder by then.
    commands.run("again", [*torchrun, *args, "train.epochs=2", "--overwrite"], 240, env=env)
    records = [json.loads(ln) for ln in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_a_training_scan_without_the_loss_label_is_refused_by_name(cohort: Path, tmp_path: Path) -> None:
    """y-aware reads ``age``: one missing age would turn its whole batch's weights into NaN."""
    import shutil

    import pandas as pd

    from medssl.errors import DataError

    copy = tmp_path / "cohort"
    shutil.copytree(cohort, copy)
    table = pd.read_csv(copy / "participants.tsv", sep="\t", dtype=str)
    row = table.index[table["split"] == "train"][0]
    table.loc[row, "age"] = "n/a"
    table.to_csv(copy / "participants.tsv", sep="\t", index=False)
    pid = table.loc[row, "participant_id"]
    with pytest.raises(DataError, match=rf"1 training scan\(s\) have no 'age' \(e.g. \['{pid}'\]"):
        pretrain(tiny(copy, tmp_path / "run"))
    from types import SimpleNamespace

    from medssl.pipelines.pretrain import check_labels

    table["age"] = pd.to_numeric(table["age"], errors="coerce")
    check_labels(SimpleNamespace(table=table, source="x"), {"label": None, "bias": "site"})  # SimCLR: fine


def test_resuming_with_a_changed_config_keeps_the_earlier_one(cohort: Path, tmp_path: Path) -> None:
    """``--resume`` with more epochs rewrites config.yaml; the config the first epochs ran with is kept."""
    import yaml

    run = pretrain(tiny(cohort, tmp_path / "run", "train.epochs=1"))
    pretrain(tiny(cohort, tmp_path / "run", "train.epochs=2"), resume=True)
    before = yaml.safe_load((run / "config.before-resume-1.yaml").read_text())
    after = yaml.safe_load((run / "config.yaml").read_text())
    assert before["train"]["epochs"] == 1 and after["train"]["epochs"] == 2
    assert not (run / "config.before-resume-2.yaml").exists()
