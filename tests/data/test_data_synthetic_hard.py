"""The ``hard`` preset: scanners a raw-voxel probe tells apart, site-confounded age bands, external sites
inside the training ages (figures at study size in docs/studies.md, "hard preset")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.cli import main
from medssl.data import CohortDataset, make_synthetic_cohort, open_cohort
from medssl.data.synthetic.design import PRESETS, design_cohort
from medssl.errors import ConfigError


def _between_site_share(table: pd.DataFrame) -> float:
    """Share of the age variance explained by the site means (eta squared)."""
    return float(table.groupby("site")["age"].transform("mean").var() / table["age"].var())


def _site_bacc(root: Path) -> float:
    """Logistic probe on per-image z-scored vbm voxels: train -> internal_test site BAcc."""
    cohort = open_cohort(root, "vbm")
    data = CohortDataset(cohort, normalize="zscore")
    x = np.stack([data[i]["image"].ravel() for i in range(len(data))])
    t = cohort.table
    tr, it = (t["split"] == "train").to_numpy(), (t["split"] == "internal_test").to_numpy()
    probe = make_pipeline(StandardScaler(), PCA(), LogisticRegression(C=1e-2, max_iter=3000))
    probe.fit(x[tr], t["site_code"][tr])
    return balanced_accuracy_score(t["site_code"][it], probe.predict(x[it]))


@pytest.fixture(scope="module")
def site_bacc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """Both presets on the hard design (12 training + 4 external sites, 240 subjects) at 16x20x16."""
    out = {}
    for preset in ("hard", "standard"):
        root = make_synthetic_cohort(tmp_path_factory.mktemp(preset) / "c", n_subjects=240, n_sites=12,
                                     n_external_sites=4, shape=(16, 20, 16), seed=0, preset=preset,
                                     modalities=["vbm"])  # fmt: skip
        out[preset] = _site_bacc(root)
    return out


def test_raw_voxels_tell_the_hard_presets_sites_apart(site_bacc: dict[str, float]) -> None:
    """Chance is 1/12; measured: hard 1.00, standard 0.60 (same design, the standard scanners)."""
    assert site_bacc["hard"] > 0.9
    assert site_bacc["standard"] < site_bacc["hard"] - 0.15


@pytest.mark.parametrize("seed", range(10))
def test_hard_sites_recruit_distinct_age_bands_inside_the_training_range(seed: int) -> None:
    hard = design_cohort("healthy", 400, 12, 4, np.random.default_rng([seed, 0]), "hard")
    standard = design_cohort("healthy", 400, 12, 4, np.random.default_rng([seed, 0]), "standard")
    train, external = (hard.loc[hard["split"] == s, "age"] for s in ("train", "external_test"))
    assert train.min() <= external.min() and external.max() <= train.max()
    assert set(hard.loc[hard["split"] == "external_test", "site"]) == set(range(12, 16))
    assert _between_site_share(hard) > 0.9 > _between_site_share(standard)  # measured 0.98 vs 0.79-0.86
    spans = hard.groupby("site")["age"].agg(lambda a: a.max() - a.min())
    assert spans.max() <= 0.2 * (88 - 6)  # each site covers at most a fifth of the lifespan


def test_preset_defaults_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (PRESETS["hard"].n_sites, PRESETS["hard"].n_external_sites) == (12, 4)
    out = tmp_path / "hard"
    args = ["synth", str(out), "--preset", "hard", "--n-subjects", "60", "--shape", "10", "12", "10",
            "--modalities", "vbm", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    table = open_cohort(out).table
    assert table["site"].nunique() == 16 and not list(out.rglob("*quasiraw*.npy"))
    assert main(["synth", str(tmp_path / "x"), "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown synthetic preset 'harder'"):
        make_synthetic_cohort(tmp_path / "y", preset="harder")
    with pytest.raises(ConfigError, match="kit layout holds both"):
        make_synthetic_cohort(tmp_path / "z", layout="kit", modalities=["vbm"])
