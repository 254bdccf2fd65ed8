"""The export against the server's own stack (torch 1.8-2.x, Python 3.8), its grid, and its metadata.

The kit's environment pins torch with cudatoolkit 10.2 (torch <= 1.12). ``old_torch_api`` emulates what
torch 1.8 and 1.12 lack that the estimator could reach for: ``torch.load`` without ``weights_only`` (1.12
passes the unknown keyword to the unpickler: TypeError), no ``torch.inference_mode`` (1.8) and no
``std(correction=)`` (1.8). A real old torch is used when ``MEDSSL_OLD_TORCH_PYTHON`` names a Python
whose environment has one (with numpy, pandas, scikit-learn and nibabel).
"""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.cli import main
from medssl.errors import ConfigError
from medssl.submit.check import mask_env, read_kit
from medssl.submit.export import export_openbhb, load_estimator_module, render_estimator
from medssl.submit.templates import ARCH_TEMPLATES, template_path

OLD_TORCH_PYTHON = os.environ.get("MEDSSL_OLD_TORCH_PYTHON")


@pytest.fixture()
def old_torch_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch as 1.8-1.12 present it to the estimator (see the module docstring)."""
    real_load, real_std = torch.load, torch.Tensor.std

    def load(f: Any, map_location: Any = None, pickle_module: Any = pickle, **pickle_load_args: Any) -> Any:
        if "weights_only" in pickle_load_args:
            raise TypeError("'weights_only' is an invalid keyword argument for Unpickler()")
        return real_load(f, map_location=map_location, pickle_module=pickle_module, weights_only=False)

    def std(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if "correction" in kwargs:
            raise TypeError("std() received an invalid combination of arguments - got (correction=int, ...)")
        return real_std(self, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.delattr(torch, "inference_mode")
    monkeypatch.setattr(torch.Tensor, "std", std)
    yield


def test_estimator_runs_on_the_api_of_torch_1_8_and_1_12(old_torch_api: None, tiny_submission: Path,
                                                           kit_root: Path) -> None:
    module = load_estimator_module(tiny_submission)
    kit = read_kit(kit_root)
    with mask_env(kit.masks):
        pipe = module.get_estimator().fit(None, None)
        pipe[-1].indices = [3, 0, 7]
        features = pipe.predict(kit.X_train)
    assert features.shape == (3, 32) and np.isfinite(features).all()


def test_old_api_features_equal_todays(tiny_submission: Path, kit_root: Path, monkeypatch: pytest.MonkeyPatch,
                                       old_torch_api: None) -> None:
    """The fallbacks compute the same numbers: features under the emulated API equal today's torch's."""
    module = load_estimator_module(tiny_submission)
    kit = read_kit(kit_root)
    with mask_env(kit.masks):
        old = module.get_estimator().fit(None, None).predict(kit.X_test)
    monkeypatch.undo()
    module = load_estimator_module(tiny_submission)
    with mask_env(kit.masks):
        new = module.get_estimator().fit(None, None).predict(kit.X_test)
    np.testing.assert_allclose(old, new, atol=1e-6, rtol=0)


@pytest.mark.parametrize("architecture", sorted(ARCH_TEMPLATES))
def test_exported_text_is_python_3_8(architecture: str) -> None:
    ast.parse(render_estimator(architecture, "vbm", 8), feature_version=(3, 8))


@pytest.mark.parametrize("name", ["runtime.py", *ARCH_TEMPLATES.values()])
def test_templates_are_python_3_8(name: str) -> None:
    ast.parse(template_path(name).read_text(), feature_version=(3, 8))


@pytest.mark.skipif(not OLD_TORCH_PYTHON, reason="set MEDSSL_OLD_TORCH_PYTHON to a Python with an old torch")
def test_estimator_runs_under_a_real_old_torch(tiny_submission: Path, kit_root: Path, tmp_path: Path) -> None:
    """The exported folder under another interpreter (e.g. Python 3.8 + torch 1.8.1 or 1.12.1), no medssl."""
    script = tmp_path / "server.py"
    script.write_text(
        "import importlib.util, sys\n"
        "import numpy as np, torch\n"
        "spec = importlib.util.spec_from_file_location('estimator', sys.argv[1] + '/estimator.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "pipe = module.get_estimator().fit(None, None)\n"
        "np.save(sys.argv[3], pipe.predict(np.load(sys.argv[2], mmap_mode='r')))\n"
        "print(torch.__version__, sys.version.split()[0])\n"
    )
    kit = read_kit(kit_root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update({key: str(path) for key, path in kit.masks.items()})
    done = subprocess.run([OLD_TORCH_PYTHON, str(script), str(tiny_submission), str(kit_root / "data" / "test.npy"),
                           str(tmp_path / "old.npy")], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    with mask_env(kit.masks):
        expected = load_estimator_module(tiny_submission).get_estimator().fit(None, None).predict(kit.X_test)
    np.testing.assert_allclose(np.load(tmp_path / "old.npy"), expected, atol=1e-5, rtol=0)


def test_refuses_an_encoder_that_never_saw_the_challenge_grid(make_encoder: Any, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = make_encoder(tmp_path / "run", "tiny_cnn3d", (32, 40, 32), width=4)
    with pytest.raises(ConfigError, match=r"32x40x32 volumes, never on the challenge's vbm grid 121x145x121") as err:
        export_openbhb(run, tmp_path / "sub")
    assert "1.9 % of it kept" in str(err.value) and "--allow-grid-mismatch" in str(err.value)
    assert not (tmp_path / "sub").exists()
    assert main(["export-openbhb", str(run), "--out", str(tmp_path / "sub")]) == 2
    assert "121x145x121" in capsys.readouterr().err
    assert main(["export-openbhb", str(run), "--out", str(tmp_path / "sub"), "--allow-grid-mismatch"]) == 0
    meta = pd.read_pickle(tmp_path / "sub" / "metadata.pkl")
    assert meta["grid_mismatch_allowed"] and meta["pretraining_grid"] == [32, 40, 32]
    assert meta["challenge_grid"] == [121, 145, 121]


def test_accepts_an_encoder_pretrained_on_the_challenge_grid(make_encoder: Any, tmp_path: Path) -> None:
    """Pretrained on 121x145x121 volumes, centre-cropped to 121x128x121 as the starting kit does: exported."""
    run = make_encoder(tmp_path / "run", "tiny_cnn3d", (121, 128, 121), cohort_shape=(121, 145, 121), width=4)
    meta = pd.read_pickle(export_openbhb(run, tmp_path / "sub") / "metadata.pkl")
    assert not meta["grid_mismatch_allowed"] and meta["pretraining_grid"] == [121, 145, 121]
    quasiraw = make_encoder(tmp_path / "q", "tiny_cnn3d", (64, 80, 64), "quasiraw", "resample",
                            cohort_shape=(182, 218, 182), width=4)
    assert export_openbhb(quasiraw, tmp_path / "q_sub").is_dir()
    with pytest.raises(ConfigError, match="182x218x182"):  # a vbm-grid encoder is not a quasiraw one
        export_openbhb(make_encoder(tmp_path / "v", "tiny_cnn3d", (121, 145, 121), "quasiraw", width=4),
                       tmp_path / "v_sub")


def test_an_older_card_without_its_grid_needs_the_grid_as_input_shape(make_encoder: Any, tmp_path: Path) -> None:
    import json

    run = make_encoder(tmp_path / "run", "tiny_cnn3d", (121, 128, 121), cohort_shape=(121, 145, 121), width=4)
    card = json.loads((run / "encoder.json").read_text())
    card.pop("cohort_shape")
    (run / "encoder.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="does not record the grid"):
        export_openbhb(run, tmp_path / "sub")
    card["preprocessing"]["shape"] = card["input_shape"] = [121, 145, 121]
    (run / "encoder.json").write_text(json.dumps(card))
    assert export_openbhb(run, tmp_path / "sub").is_dir()


def test_nothing_exported_names_a_local_path(tiny_run: Path, tmp_path: Path) -> None:
    """metadata.pkl keeps what the server and a reader need; no file holds the run, cohort or tmp folder."""
    out = export_openbhb(tiny_run, tmp_path / "sub", allow_grid_mismatch=True)
    meta = pd.read_pickle(out / "metadata.pkl")
    assert set(meta) == {"architecture", "backbone_kwargs", "num_features", "modality", "preprocessing",
                         "batch_size", "challenge_grid", "pretraining_grid", "grid_mismatch_allowed",
                         "pretraining", "medssl_version"}
    assert meta["pretraining"] == {"method": "siamese", "loss": "yaware", "regularizer": None}
    forbidden = [str(tiny_run), tiny_run.name, tiny_run.parent.name, str(tmp_path), tmp_path.name,
                 str(Path.home()), os.getcwd()]
    for path in out.iterdir():
        data = path.read_bytes()
        for text in forbidden:
            assert text.encode() not in data, (path.name, text)
    assert "/" not in repr(meta)  # no path at all in the metadata
    assert (out / "metadata.pkl").read_bytes()[:2] == b"\x80\x04"  # pickle protocol 4: any Python >= 3.4
