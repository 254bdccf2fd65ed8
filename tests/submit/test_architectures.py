"""Every exportable backbone, at tiny size: export, run in a python without medssl, equal medssl's features."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from medssl.data import CohortDataset, open_cohort
from medssl.eval.features import extract_features
from medssl.models import load_encoder
from medssl.submit.check import check_submission, read_kit
from medssl.submit.export import export_openbhb

CASES = {  # name -> (architecture, backbone kwargs, input shape, resize); kit volumes are 16x20x16
    "tiny_cnn3d": ("tiny_cnn3d", {"width": 4}, (16, 16, 16), "crop_pad"),
    "tiny_cnn3d-resample": ("tiny_cnn3d", {"width": 4}, (12, 24, 10), "resample"),
    "alexnet_3d": ("alexnet_3d", {}, (20, 20, 20), "crop_pad"),
    "resnet18_3d": ("resnet18_3d", {"stem_stride": 2}, (16, 16, 16), "crop_pad"),
    "densenet121_3d": ("densenet121_3d", {}, (32, 32, 32), "crop_pad"),
}

DRIVER = '''
import importlib.abc, importlib.util, os, sys
import numpy as np

class NotOnTheServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("medssl", "monai"):
            raise ImportError(name + " is not installed on the RAMP server")

sys.meta_path.insert(0, NotOnTheServer())
folder, x_path, out_path = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("submission", os.path.join(folder, "estimator.py"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
estimator = module.get_estimator().fit(None, None)
X = np.load(x_path, mmap_mode="r")
rows = list(range(len(X)))[::-1]
for item in estimator:
    if hasattr(item, "indices"):
        item.indices = rows
features = estimator.predict(X)[::-1]
assert not [m for m in sys.modules if m.split(".")[0] in ("medssl", "monai")]
np.save(out_path, features)
'''


def medssl_features(run: Path, kit: Path) -> np.ndarray:
    """medssl's evaluation path on the kit's test rows: open_cohort -> CohortDataset -> extract_features."""
    backbone, card = load_encoder(run)
    prep = card["preprocessing"]
    cohort = open_cohort(kit, modality="vbm").select(["internal_test", "external_test"])
    dataset = CohortDataset(cohort, shape=prep["shape"], resize=prep["resize"], normalize=prep["normalize"])
    features, meta = extract_features(backbone, dataset, device="cpu", progress=False)
    assert list(meta["participant_id"]) == list(pd.read_csv(kit / "data" / "test.tsv", sep="\t",
                                                            dtype={"participant_id": str})["participant_id"])
    return features


@pytest.mark.parametrize("case", sorted(CASES))
def test_exported_architecture_runs_without_medssl(case: str, synthetic_kit: Path, tmp_path: Path,
                                                  make_encoder: Callable[..., Path]) -> None:
    name, kwargs, shape, resize = CASES[case]
    run = make_encoder(tmp_path / "run", name, shape, resize=resize, **kwargs)
    submission = export_openbhb(run, tmp_path / "submissions" / case, batch_size=4, allow_grid_mismatch=True)
    kit = read_kit(synthetic_kit)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({k: str(v) for k, v in kit.masks.items()})
    (tmp_path / "driver.py").write_text(DRIVER)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = tmp_path / "features.npy"
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "driver.py"), str(submission), str(synthetic_kit / "data" / "test.npy"),
         str(out)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    features = np.load(out)
    expected = medssl_features(run, synthetic_kit)
    assert features.shape == (len(kit.X_test), expected.shape[1]) and np.isfinite(features).all()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(features, expected, atol=1e-5, rtol=0)


def test_the_harness_on_medssl_synthetic_kit(synthetic_kit: Path, tmp_path: Path,
                                             make_encoder: Callable[..., Path]) -> None:
    run = make_encoder(tmp_path / "run", "alexnet_3d", (20, 20, 20))
    submission = export_openbhb(run, tmp_path / "alexnet", allow_grid_mismatch=True)
    scores = check_submission(submission, synthetic_kit, log=lambda _: None)
    assert np.isfinite([scores[k] for k in ("mae_age", "bacc_site", "ext_mae_age", "challenge_metric")]).all()
