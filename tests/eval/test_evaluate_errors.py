"""``medssl evaluate`` refuses what it cannot score before embedding: one line naming the file and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from medssl.cli import main
from medssl.models import save_encoder
from medssl.registry import BACKBONES

SHAPE = [8, 10, 8]


@pytest.fixture(scope="module")
def cohort_and_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medssl.data import make_synthetic_cohort

    root = tmp_path_factory.mktemp("eval_errors")
    data = make_synthetic_cohort(root / "data", n_subjects=24, n_sites=2, n_external_sites=1, shape=tuple(SHAPE))
    torch.manual_seed(0)
    save_encoder(root / "run" / "encoder.pt", BACKBONES.build("tiny_cnn3d", width=2),
                 {"backbone": {"name": "tiny_cnn3d", "width": 2}, "input_shape": SHAPE, "modality": "vbm"})
    return data, root / "run"


def test_a_cohort_without_ages_names_the_file_and_column(cohort_and_run: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, run = cohort_and_run
    copy = Path(shutil.copytree(data, tmp_path / "data"))
    table = pd.read_csv(copy / "participants.tsv", sep="\t", dtype=str)
    table.drop(columns="age").to_csv(copy / "participants.tsv", sep="\t", index=False)
    import medssl.pipelines.evaluate as pipeline

    monkeypatch.setattr(pipeline, "extract_features", lambda *a, **k: pytest.fail("embedded before checking"))
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--data", str(copy), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(copy / "participants.tsv") in err and "'age'" in err
    assert "training scans" in err and "fill in" in err
    assert not out.exists()


def test_a_folder_of_runs_is_not_an_encoder(cohort_and_run: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, run = cohort_and_run
    for arm in ("simclr", "yaware"):
        shutil.copytree(run, tmp_path / "demo" / arm)
    assert main(["evaluate", str(tmp_path / "demo"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "simclr, yaware" in err and f"medssl evaluate {tmp_path / 'demo' / 'simclr'}" in err
    assert not (tmp_path / "demo" / "eval").exists()
