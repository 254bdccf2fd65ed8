"""The torch simulation of the synthetic generator against independent numpy/scipy computations, its
determinism and its batch invariance; the CUDA checks run with ``pytest -m gpu`` on a GPU."""

from __future__ import annotations

import dataclasses
import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from medssl.data import make_synthetic_cohort
from medssl.data.synthetic import simulate
from medssl.data.synthetic.anatomy import load_anatomy
from medssl.data.synthetic.design import PRESETS
from medssl.data.synthetic.simulate import (
    AGE_PATTERNS,
    DIAGNOSIS_EFFECTS,
    Scan,
    blur_operator,
    coarse_grid,
    device_anatomy,
    draw_scan,
    draw_site,
    simulate_batch,
    upsample,
)  # fmt: skip

SHAPE = (14, 17, 13)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _scans(n: int, shape: tuple[int, int, int] = SHAPE, preset: str = "hard", seed: int = 0) -> list[Scan]:
    """``n`` subjects of mixed ages and diagnoses over two sites, drawn as the generator does."""
    grid, rng = coarse_grid(shape), np.random.default_rng(seed)
    sites = [draw_site(rng, PRESETS[preset], grid) for _ in range(2)]
    diagnoses = ["control", "scz", "asd", "bd"]
    return [draw_scan(rng, float(rng.uniform(6, 88)), float(rng.uniform(1200, 1600)), diagnoses[i % 4],
                      0.0 if i % 4 == 0 else float(rng.uniform(0.5, 1.5)), sites[i % 2], grid)
            for i in range(n)]  # fmt: skip


def _noise_free(scan: Scan) -> Scan:
    quiet = {m: dataclasses.replace(fx, noise=0.0) for m, fx in scan.scanners.items()}
    return dataclasses.replace(scan, scanners=quiet)


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.2, 2.6])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, cuda])])
def test_blur_is_scipys_reflect_gaussian_filter(sigma: float, device: str) -> None:
    volume = np.random.default_rng(0).random((37, 20, 9)).astype(np.float32)  # 37 rows: several CPU blocks
    want = ndimage.gaussian_filter(volume.astype(np.float64), sigma, mode="reflect", truncate=4.0)
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False  # as simulate_batch
    try:
        got = blur_operator(sigma, volume.shape, device)(torch.as_tensor(volume, device=device)).cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_upsample_is_trilinear_interpolation_with_aligned_corners() -> None:
    anat = device_anatomy(SHAPE, "cpu")
    coarse = torch.randn(2, *coarse_grid(SHAPE).nodes, 4, dtype=torch.float32)
    want = F.interpolate(coarse.permute(0, 4, 1, 2, 3), size=SHAPE, mode="trilinear", align_corners=True)
    np.testing.assert_allclose(upsample(coarse, anat).permute(0, 4, 1, 2, 3), want, atol=1e-6)


def test_random_field_has_the_requested_std_and_smoothness() -> None:
    grid = coarse_grid((32, 40, 32))
    rng = np.random.default_rng(0)
    fields = np.stack([grid.field(rng.standard_normal(grid.noise_shape), 2.0) for _ in range(300)])
    assert fields.std() == pytest.approx(2.0, rel=0.05)
    # Gaussian-blurred white noise of sigma s has correlation exp(-d^2 / 4 s^2) at distance d (in nodes)
    s = simulate.SMOOTHNESS * 40 / grid.spacing()[1]
    lag = np.corrcoef(fields[:, :, :, :-2].ravel(), fields[:, :, :, 2:].ravel())[0, 1]
    assert lag == pytest.approx(np.exp(-(2**2) / (4 * s**2)), abs=0.03)


def test_jacobian_of_a_linear_displacement_is_exact() -> None:
    grid = coarse_grid((20, 24, 20))
    a = np.array([[0.1, -0.05, 0.02], [0.03, 0.2, -0.1], [0.0, 0.04, -0.15]])
    pos = np.stack(np.meshgrid(*(np.arange(n) * s for n, s in zip(grid.nodes, grid.spacing())), indexing="ij"))
    u = np.tensordot(a, pos, axes=1)
    np.testing.assert_allclose(simulate._jacobian_det(u, grid.spacing()), np.linalg.det(np.eye(3) + a), rtol=1e-12)


def test_sampling_grid_without_displacement_is_the_identity() -> None:
    """Channels (x, y, z) = (W, H, D) in grid_sample's align-corners units: warping by it changes nothing."""
    grid = coarse_grid(SHAPE)
    channels = np.stack(simulate._grid_channels(grid, np.zeros((3, *grid.nodes))), axis=-1)
    volume = torch.rand(1, 1, *SHAPE, dtype=torch.float64)
    full = upsample(torch.as_tensor(channels)[None], device_anatomy(SHAPE, "cpu"))
    warped = F.grid_sample(volume, full, mode="bilinear", align_corners=True)
    np.testing.assert_allclose(warped, volume, atol=1e-12)


def _reference(scan: Scan, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The noise-free model of one subject in float64 numpy/scipy, written from docs/data.md: coarse
    fields interpolated by ``map_coordinates``, warps by ``map_coordinates(mode="grid-constant")``,
    blur by ``gaussian_filter``."""
    anat, grid = load_anatomy(shape), coarse_grid(shape)
    index = np.indices(shape, dtype=np.float64)
    at_nodes = index / grid.spacing()[:, None, None, None]

    def up(channel: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(channel.astype(np.float64), at_nodes, order=1, mode="nearest")

    def warp(volume: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
        return ndimage.map_coordinates(volume.astype(np.float64), coords, order=1, mode="grid-constant")

    curves = simulate.age_curves(np.array([scan.age]))[0]
    loss = sum(c * (base + sum(w * anat.region(r) for r, w in weights.items()))
               for c, (base, weights) in zip(curves, AGE_PATTERNS.values()))  # fmt: skip
    gm = anat.gm * np.exp(-loss)
    for region, effect in DIAGNOSIS_EFFECTS.get(scan.diagnosis, {}).items():
        if region != "ventricles":
            gm = gm * (1 + scan.severity * effect * anat.region(region))
    rel = index - anat.ventricle_center[:, None, None, None]
    u_vent = -scan.ventricles * np.exp(-(rel**2).sum(0) / (2 * anat.ventricle_radius**2)) * rel
    out = {}
    for modality, fields in scan.fields.items():
        fx = scan.scanners[modality]
        coords = [(up(fields[..., 2 - a]) + 1) * (shape[a] - 1) / 2 + u_vent[a] for a in range(3)]
        if modality == "quasiraw":
            f = simulate.wm_factor(np.array([scan.age]))[0]
            csf = np.clip(anat.csf + np.clip(anat.gm - gm, 0, None) + (1 - f) * anat.wm, 0, 1)
            c_gm = 0.45 + 0.001 * (scan.age - 40) + fx.gm_contrast
            c_wm = 0.8 - 0.0015 * max(scan.age - 40, 0)
            volume = warp(0.15 * csf + c_gm * gm + c_wm * f * anat.wm, coords)
            mask = warp(anat.brain, coords) > 0.5
        else:
            volume, mask = warp(gm, coords), anat.brain > 0.1
        volume = volume * up(fields[..., 3])
        if fx.blur > simulate.MIN_BLUR:
            volume = ndimage.gaussian_filter(volume, fx.blur, mode="reflect", truncate=4.0)
        out[modality] = np.clip((fx.scale * volume + fx.offset) * mask, 0, None)
    return out


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, cuda])])
def test_simulation_matches_an_independent_numpy_model(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise off (scanner noise 0, texture std 0): every other step of the model, float32 vs float64."""
    monkeypatch.setattr(simulate, "TEXTURE_STD", 0.0)
    scans = [_noise_free(s) for s in _scans(4)]
    got = simulate_batch(device_anatomy(SHAPE, device), scans)
    for b, scan in enumerate(scans):
        want = _reference(scan, SHAPE)
        for modality, volume in got.items():
            diff = np.abs(volume[b].cpu().numpy() - want[modality])
            assert want[modality].max() > 0.2
            # a voxel whose warped brain mask sits at 0.5 may flip between float32 and float64
            assert (diff > 1e-4).mean() <= 0.002 and np.median(diff) < 1e-6, (modality, b, diff.max())


def test_batch_invariance_and_determinism() -> None:
    """Each subject's volume is bitwise the same alone, in any batch and at any position."""
    scans = _scans(6)
    anat = device_anatomy(SHAPE, "cpu")
    whole = simulate_batch(anat, scans)
    for batch in ([5], [1, 3], [4, 0, 2], [2, 1, 0, 3, 5, 4]):
        part = simulate_batch(anat, [scans[i] for i in batch])
        for modality in whole:
            for k, i in enumerate(batch):
                assert torch.equal(part[modality][k], whole[modality][i]), (modality, batch, i)
    vbm_only = simulate_batch(anat, scans, ["vbm"])
    assert list(vbm_only) == ["vbm"] and torch.equal(vbm_only["vbm"], whole["vbm"])
    assert not torch.equal(whole["vbm"][0], whole["vbm"][1])


def test_cohort_files_do_not_depend_on_the_batch_size_or_threads(tmp_path: Path) -> None:
    kw = dict(cohort="scz", n_subjects=12, n_sites=2, n_external_sites=1, shape=(10, 12, 10), seed=4, layout="hf")
    threads = torch.get_num_threads()
    a = make_synthetic_cohort(tmp_path / "a", batch_size=1, **kw)
    torch.set_num_threads(1)  # one CPU worker instead of one per thread
    try:
        b = make_synthetic_cohort(tmp_path / "b", batch_size=5, **kw)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads  # the generator gives the caller its threads back
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 12 + 4 and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    volume = np.load(next(a.rglob("*cat12vbm*.npy")))
    assert volume.dtype == np.float32 and volume.shape == (1, 1, 10, 12, 10)


@pytest.mark.gpu
@cuda
def test_cuda_cohort_is_deterministic_and_like_the_cpu_one(tmp_path: Path) -> None:
    """Same files twice on CUDA and for any batch size; the CPU cohort has the same subjects (same
    parameters and smooth fields), its volumes differ only by the voxel noise drawn on the device."""
    kw = dict(n_subjects=20, n_sites=3, n_external_sites=1, shape=(24, 28, 24), seed=2)
    a = make_synthetic_cohort(tmp_path / "a", device="cuda", **kw)
    b = make_synthetic_cohort(tmp_path / "b", device="cuda", batch_size=3, **kw)
    c = make_synthetic_cohort(tmp_path / "c", device="cpu", **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*.npy"))
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    for f in files:
        x, y = np.load(a / f).ravel(), np.load(c / f).ravel()
        assert np.corrcoef(x, y)[0, 1] > 0.95 and abs(x.mean() - y.mean()) < 0.02 * y.mean()


@pytest.mark.gpu
@cuda
def test_simulate_batch_never_waits_for_the_device() -> None:
    """The hot path queues work only: any synchronising call inside it raises (sync debug mode)."""
    anat, scans = device_anatomy(SHAPE, "cuda"), _scans(4)
    want = simulate_batch(anat, scans)  # warm-up: the cached shift matrices are made once
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = simulate_batch(anat, scans)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.equal(got[m], want[m]) for m in want)
