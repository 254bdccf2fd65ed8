"""Encoders shared the Hugging Face way: export-hub folders and hf:// references read from the hub cache.

No network: hf:// tests fill a folder in huggingface_hub's cache layout
(``models--ORG--NAME/snapshots/<commit>/...``, ``refs/main``) and run with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import medssl.models  # noqa: F401  (registers the backbones)
from medssl.errors import DataError, OutputExistsError
from medssl.models.encoder_io import load_encoder, resolve_encoder_path, save_encoder
from medssl.models.hub import parse_hub_reference
from medssl.pipelines.hub_export import export_hub
from medssl.registry import BACKBONES

ROOT = Path(__file__).resolve().parents[2]
SHAPE = [16, 16, 16]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COHORT = {"name": "synthetic healthy cohort (medssl generator v2, seed 0)", "layout": "hf", "modality": "vbm",
          "split": "train", "n_scans": 27, "n_subjects": 25, "n_sites": 3, "studies": ["synth-healthy"],
          "image_shape": [32, 32, 32], "voxel_size_mm": [2.0, 2.0, 2.0]}


def make_run(run: Path, resize: str = "crop_pad") -> torch.nn.Module:
    """A run folder as ``medssl pretrain`` leaves it (encoder, card, config.yaml) plus ``eval/metrics.json``."""
    torch.manual_seed(3)
    net = BACKBONES.build("tiny_cnn3d", width=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a lost buffer would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    config = {"data": {"source": str(run / "secret_data"), "modality": "vbm"},
              "model": {"name": "tiny_cnn3d", "width": 4}, "head": {"name": "mlp", "out_dim": 8},
              "views": {"name": "yaware", "backend": "torch"}, "loss": {"name": "yaware", "sigma": 5.0},
              "regularizer": {"name": "fairkl", "kernel": "rbf"},
              "objective": {"label": "age", "bias": "site", "alpha": 1.0, "lambda": 0.5},
              "train": {"epochs": 7, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "seed": 2},
              "out": str(run), "_run": {"git_sha": "abc", "versions": {"medssl": "0.1.0"}}}
    save_encoder(run / "encoder.pt", net, {
        "backbone": {"name": "tiny_cnn3d", "width": 4}, "input_shape": SHAPE, "modality": "vbm",
        "preprocessing": {"shape": SHAPE, "resize": resize, "normalize": "zscore"},
        "cohort": str(run / "secret_data"), "pretraining_cohort": COHORT, "method": "siamese",
        "loss": config["loss"], "regularizer": config["regularizer"], "objective": config["objective"],
        "config": config})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({
        "mae_internal": 6.54321, "mae_external": 9.1, "bacc_site": 0.4321, "site_chance": 1 / 3,
        "challenge_score": 7.77, "n_train": 27, "n_internal": 8, "n_external": 5, "cv": "fixed",
        "data_source": str(run / "secret_data"), "encoder": str(run)}))
    return net


def test_export_then_load_gives_the_same_features(tmp_path: Path) -> None:
    net = make_run(tmp_path / "run")
    out = export_hub(tmp_path / "run", tmp_path / "hub", repo_id="org/name")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded, card = load_encoder(out)
    x = torch.randn(3, 1, *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = net.eval()(x), loaded.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    assert card["backbone"] == {"name": "tiny_cnn3d", "width": 4} and card["num_features"] == 32


def test_safetensors_holds_no_pickle_and_nothing_names_a_local_path(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    out = export_hub(tmp_path / "run", tmp_path / "hub")
    raw = (out / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header length, JSON header, raw tensors
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"] == {"format": "pt"} and "features.0.weight" in header
    for path in out.iterdir():
        text = path.read_bytes().decode("latin-1")
        assert str(tmp_path) not in text and "secret_data" not in text, path.name


def test_config_json_describes_the_input(tmp_path: Path) -> None:
    make_run(tmp_path / "run", resize="resample")
    config = json.loads((export_hub(tmp_path / "run", tmp_path / "hub") / "config.json").read_text())
    assert config["backbone"] == {"name": "tiny_cnn3d", "width": 4} and config["num_features"] == 32
    assert config["input_shape"] == SHAPE and config["modality"] == "vbm"
    assert config["preprocessing"] == {"shape": SHAPE, "resize": "resample", "normalize": "zscore"}
    assert config["voxel_size_mm"] == [4.0, 4.0, 4.0]  # 32^3 voxels of 2 mm resampled to 16^3
    assert config["objective"] == {"label": "age", "bias": "site", "alpha": 1.0, "lambda": 0.5}
    assert config["pretraining_cohort"]["n_subjects"] == 25 and "layout" not in config["pretraining_cohort"]


def test_model_card_has_front_matter_cohort_objective_and_metrics(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    text = (export_hub(tmp_path / "run", tmp_path / "hub", repo_id="org/name", license_id="cc-by-4.0")
            / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "medssl" and meta["license"] == "cc-by-4.0"
    assert {"medssl", "brain-mri", "tiny_cnn3d", "yaware"} <= set(meta["tags"])
    assert "synthetic healthy cohort (medssl generator v2, seed 0), 25 subjects (27 scans) from 3 sites" in text
    assert "label `age`, bias `site`, alpha 1.0, lambda 0.5" in text
    assert "`fairkl (kernel=rbf)`" in text and "epochs 7" in text and "lr 0.001" in text
    assert "| 6.54 |" in text and "| 0.432 |" in text  # eval/metrics.json
    assert 'load_encoder("hf://org/name")' in text
    assert "## Intended use" in text and "## Limitations" in text and "Synthetic data" in text


def test_export_without_metrics_says_not_evaluated(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "eval")
    text = (export_hub(tmp_path / "run" / "encoder.pt", tmp_path / "hub") / "README.md").read_text()
    assert "Not evaluated yet" in text


def test_export_refuses_a_non_empty_folder_without_overwrite(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_hub(tmp_path / "run", tmp_path / "hub")
    assert (tmp_path / "hub" / "keep.txt").exists()
    export_hub(tmp_path / "run", tmp_path / "hub", overwrite=True)
    assert not (tmp_path / "hub" / "keep.txt").exists() and (tmp_path / "hub" / "model.safetensors").exists()


def test_a_corrupt_safetensors_file_is_one_data_error(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    out = export_hub(tmp_path / "run", tmp_path / "hub")
    (out / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DataError, match="model.safetensors"):
        load_encoder(out)


@pytest.mark.parametrize("ref,expected", [("hf://org/name", ("org/name", None)),
                                          ("hf://org/name@v1.0", ("org/name", "v1.0"))])
def test_hub_references_parse(ref: str, expected: tuple[str, str | None]) -> None:
    assert parse_hub_reference(ref) == expected


@pytest.mark.parametrize("ref", ["hf://name", "hf://org/name/extra", "hf://org/name@", "hf:///name"])
def test_malformed_hub_references_are_refused(ref: str) -> None:
    with pytest.raises(DataError, match="hf://ORG/NAME"):
        parse_hub_reference(ref)


def test_without_huggingface_hub_an_hf_reference_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(DataError, match=r"pip install medssl\[hub\]") as info:
        load_encoder("hf://org/name")
    assert "\n" not in str(info.value)


def fill_hub_cache(hf_home: Path, folder: Path, repo: str = "org/name", tag: str | None = None) -> Path:
    """Copy an exported folder into huggingface_hub's cache layout under ``hf_home/hub``."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot)
    (root / "refs").mkdir(parents=True)
    for ref in ["main", *([tag] if tag else [])]:
        (root / "refs" / ref).write_text(COMMIT)
    return snapshot


def offline_env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "MEDSSL_PROGRESS": "0", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")}


LOAD_SNIPPET = """
import sys, torch
from medssl.models.encoder_io import encoder_name, load_encoder, resolve_encoder_path
x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
for ref in sys.argv[1:]:
    net, card = load_encoder(ref)
    torch.save(net.eval()(x).detach(), ref.replace("/", "_").replace(":", "") + ".pt")
    print(encoder_name(ref), resolve_encoder_path(ref).name, card["num_features"])
"""


def test_hf_references_load_from_a_prepopulated_hub_cache(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    net = make_run(tmp_path / "run")
    fill_hub_cache(tmp_path / "hf", export_hub(tmp_path / "run", tmp_path / "hub"), tag="v1")
    refs = ["hf://org/name", "hf://org/name@v1", f"hf://org/name@{COMMIT}"]
    done = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, *refs], cwd=tmp_path, env=offline_env(tmp_path / "hf"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["org--name", "org--name@v1", f"org--name@{COMMIT}"]
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net.eval()(x)
    for ref in refs:
        got = torch.load(tmp_path / (ref.replace("/", "_").replace(":", "") + ".pt"), weights_only=True)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_an_uncached_revision_offline_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    make_run(tmp_path / "run")
    fill_hub_cache(tmp_path / "hf", export_hub(tmp_path / "run", tmp_path / "hub"))
    done = subprocess.run([sys.executable, "-m", "medssl.cli", "evaluate", "hf://org/name@v9", "--out", "ev"],
                          cwd=tmp_path, env=offline_env(tmp_path / "hf"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and "cannot fetch hf://org/name@v9" in done.stderr
    assert not (tmp_path / "ev").exists()


@pytest.mark.slow
def test_medssl_evaluate_accepts_an_hf_reference_and_an_exported_folder(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    from medssl.data import make_synthetic_cohort

    make_run(tmp_path / "run")
    hub = export_hub(tmp_path / "run", tmp_path / "hub")
    fill_hub_cache(tmp_path / "hf", hub)
    data = make_synthetic_cohort(tmp_path / "data", n_subjects=40, n_sites=3, n_external_sites=1,
                                 shape=tuple(SHAPE), seed=0)
    scores = []
    for source in ("hf://org/name", str(hub)):
        done = subprocess.run([sys.executable, "-m", "medssl.cli", "evaluate", source, "--data", str(data)],
                              cwd=tmp_path, env=offline_env(tmp_path / "hf"), capture_output=True, text=True,
                              timeout=280)
        assert done.returncode == 0, done.stderr[-3000:]
        scores.append(done.stdout.splitlines()[0])
    assert scores[0] == scores[1]  # the same encoder, the same numbers
    assert (tmp_path / "org--name_eval" / "metrics.json").exists()  # hf:// default output: ./ORG--NAME_eval
    assert (hub / "eval" / "metrics.json").exists()  # an exported folder is treated as a run folder


def test_resolve_encoder_path_prefers_a_run_folders_encoder_pt(tmp_path: Path) -> None:
    make_run(tmp_path / "run")
    export_hub(tmp_path / "run", tmp_path / "hub")
    shutil.copy(tmp_path / "hub" / "model.safetensors", tmp_path / "run")
    assert resolve_encoder_path(tmp_path / "run").name == "encoder.pt"
    assert resolve_encoder_path(tmp_path / "hub").name == "model.safetensors"
