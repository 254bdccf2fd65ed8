"""Properties of the synthetic generator: realistic confounds, determinism, atomic output."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.data import ensure_synthetic, make_synthetic_cohort, open_cohort
from medssl.data.synthetic import generate
from medssl.data.synthetic.simulate import device_anatomy, grey_matter
from medssl.errors import ConfigError, OutputExistsError

SMALL = dict(n_subjects=14, n_sites=2, n_external_sites=1, shape=(10, 12, 10))


def _voxels(root: Path, modality: str) -> tuple[np.ndarray, pd.DataFrame]:
    cohort = open_cohort(root, modality)
    return np.stack([cohort.read(i).ravel() for i in range(len(cohort))]), cohort.table


@pytest.mark.parametrize(("modality", "minimum"), [("vbm", 0.45), ("quasiraw", 0.8)])
def test_site_is_decodable_from_raw_voxels(hf_root: Path, modality: str, minimum: float) -> None:
    """Linear probe, 4-fold CV over the 3 training sites' scans: chance is 1/3."""
    x, t = _voxels(hf_root, modality)
    keep = (t["split"] != "external_test").to_numpy()
    probe = make_pipeline(StandardScaler(), PCA(), LogisticRegression(C=1e-2, max_iter=2000))
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    bacc = cross_val_score(probe, x[keep], t["site_code"][keep], cv=cv, scoring="balanced_accuracy").mean()
    assert bacc >= minimum > 1 / 3 + 0.1


def test_age_lowers_grey_matter(hf_root: Path) -> None:
    x, t = _voxels(hf_root, "vbm")
    assert np.corrcoef(t["age"], x.sum(1))[0, 1] < -0.2  # through TIV, sex and site noise
    ages = (10, 25, 45, 65, 85)
    totals = grey_matter(device_anatomy((16, 20, 16), "cpu"), ages, ["control"] * 5, [0.0] * 5).sum((1, 2, 3)).numpy()
    assert all(a > b for a, b in zip(totals, totals[1:]))
    losses = np.diff(totals)  # non-linear: faster loss late in life than in mid adulthood
    assert losses[-1] < losses[1] < 0


def test_sites_and_ages_are_confounded_and_external_sites_unseen(hf_root: Path) -> None:
    t = open_cohort(hf_root).table
    train_sites = set(t.loc[t["split"] == "train", "site"])
    assert not train_sites & set(t.loc[t["split"] == "external_test", "site"])
    assert set(t.loc[t["split"] == "internal_test", "site"]) <= train_sites
    # each site recruits its own age band: site explains a large part of the age variance
    between = t.groupby("site")["age"].transform("mean").var() / t["age"].var()
    assert between > 0.3


def test_clinical_cohort_has_cases_and_controls_at_every_site(tmp_path: Path) -> None:
    root = make_synthetic_cohort(tmp_path / "scz", cohort="scz", n_subjects=24, n_sites=3, n_external_sites=1,
                                 shape=(10, 12, 10), seed=3)  # fmt: skip
    cohort = open_cohort(root)  # NIfTI + manifest_vbm.csv
    assert cohort.layout == "manifest" and set(cohort.table["diagnosis"]) == {"scz", "control"}
    per_site = cohort.table.groupby("site")["diagnosis"].nunique()
    assert (per_site == 2).all() and len(per_site) == 4
    anat = device_anatomy((10, 12, 10), "cpu")
    frontal = anat.regions["frontal"]
    case, control = grey_matter(anat, [40.0, 40.0], ["scz", "control"], [1.0, 1.0])
    assert (case * frontal).sum() < 0.97 * (control * frontal).sum()


def test_deterministic_under_the_seed(tmp_path: Path) -> None:
    a = make_synthetic_cohort(tmp_path / "a", seed=5, **SMALL)
    b = make_synthetic_cohort(tmp_path / "b", seed=5, **SMALL)
    c = make_synthetic_cohort(tmp_path / "c", seed=6, **SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    assert not filecmp.cmp(a / "participants.tsv", c / "participants.tsv", shallow=False)


def test_output_is_atomic_and_never_overwritten_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = make_synthetic_cohort(tmp_path / "c", seed=1, **SMALL)
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        make_synthetic_cohort(out, seed=2, **SMALL)
    calls = {"n": 0}
    real = generate.simulate_batch

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 3:  # after two batches have been handed to the writers
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "simulate_batch", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        make_synthetic_cohort(out, seed=2, overwrite=True, batch_size=2, **SMALL)
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1  # the old cohort is intact
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="disk full"):
        make_synthetic_cohort(tmp_path / "new", seed=2, batch_size=2, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # nothing half-written left behind


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_subjects=5 is too small"):
        make_synthetic_cohort(tmp_path / "x", n_subjects=5, n_sites=2)
    with pytest.raises(ConfigError, match="unknown synthetic cohort 'adhd'"):
        make_synthetic_cohort(tmp_path / "x", cohort="adhd")
    with pytest.raises(ConfigError, match="unknown layout 'zip'"):
        make_synthetic_cohort(tmp_path / "x", layout="zip")


def test_ensure_synthetic_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = ensure_synthetic(tmp_path, n_subjects=20, shape=(10, 12, 10), seed=0)
    assert root.parent == tmp_path and open_cohort(root).layout == "hf"
    monkeypatch.setattr(generate, "make_synthetic_cohort", lambda *a, **k: pytest.fail("regenerated"))
    assert ensure_synthetic(tmp_path, n_subjects=20, shape=(10, 12, 10), seed=0) == root
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path))
    assert ensure_synthetic(n_subjects=20, shape=(10, 12, 10)) == root
