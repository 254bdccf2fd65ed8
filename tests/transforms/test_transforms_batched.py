"""Batched torch augmentations: exact maths against independent computations, per-sample randomness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.transforms import RandBiasField
from scipy.ndimage import gaussian_filter
from torch.profiler import ProfilerActivity, profile

from medssl.transforms import ViewAugmenter, preset_ops
from medssl.transforms.base import apply_per_axis
from medssl.transforms.intensity import BiasField, GaussianBlur, GaussianNoise, legendre_bias_field
from medssl.transforms.spatial import (
    CropResize,
    Cutout,
    RandomAffine,
    RandomFlip,
    affine_theta,
    crop_resize_matrix,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_is_an_exact_reversal_along_the_axis() -> None:
    x = torch.randn(3, 2, 5, 6, 7)  # two channels: both flipped alike
    for axis in range(3):
        assert torch.equal(RandomFlip(1.0, axes=[axis])(x), x.flip(2 + axis))
    assert torch.equal(RandomFlip(0.0)(x), x)


def test_an_axis_listed_twice_is_drawn_twice_as_often() -> None:
    x = torch.randn(400, 1, 3, 4, 5)
    assert torch.equal(RandomFlip(1.0, axes=[0, 0])(x, gen()), x.flip(2))  # every sample flipped
    out = RandomFlip(1.0, axes=[0, 0, 2])(x, gen())
    along_d = sum(torch.equal(out[b], x[b].flip(1)) for b in range(len(x)))
    assert 230 <= along_d <= 300  # 2/3 of 400, binomial sd 9.4


def test_flip_is_per_sample() -> None:
    x = torch.randn(16, 1, 5, 6, 7)
    out = RandomFlip(0.5)(x, gen())
    kinds = []
    for b in range(16):
        candidates = [x[b]] + [x[b].flip(1 + a) for a in range(3)]
        matches = [i for i, c in enumerate(candidates) if torch.equal(out[b], c)]
        assert matches, "every sample is either untouched or flipped along exactly one axis"
        kinds.append(matches[0])
    assert 0 in kinds and len(set(kinds)) >= 3  # some untouched, several different axes


def test_noise_std_matches_sigma_and_varies_per_sample() -> None:
    zeros = torch.zeros(4, 1, 32, 32, 32)
    out = GaussianNoise(1.0, sigma=(0.3, 0.3))(zeros, gen())
    torch.testing.assert_close(out.std(dim=(1, 2, 3, 4)), torch.full((4,), 0.3), rtol=0.02, atol=0)
    stds = GaussianNoise(1.0, sigma=(0.1, 1.0))(torch.zeros(8, 1, 24, 24, 24), gen()).std(dim=(1, 2, 3, 4))
    assert stds.min() > 0.09 and stds.max() < 1.01 and stds.max() - stds.min() > 0.2


def test_blur_matches_scipy_gaussian_filter_with_nearest_borders() -> None:
    x = torch.randn(2, 1, 10, 12, 14, dtype=torch.float64)
    out = GaussianBlur(1.0, sigma=(1.0, 1.0))(x, gen())
    for b in range(2):  # scipy 'nearest' = edge replication; truncate 4 -> the same 9-tap kernel
        want = gaussian_filter(x[b, 0].numpy(), sigma=1.0, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(out[b, 0].numpy(), want, atol=1e-6)


def test_blur_sigma_is_per_sample() -> None:
    x = torch.randn(6, 1, 12, 12, 12)
    out = GaussianBlur(1.0, sigma=(0.1, 1.0))(x, gen(3))
    roughness = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(1, 2, 3, 4))
    assert roughness.max() / roughness.min() > 1.3  # different sigmas smooth by different amounts


def test_cutout_zeroes_a_quarter_side_box() -> None:
    x = torch.ones(8, 1, 16, 20, 24)
    out = Cutout(1.0, fraction=0.25)(x, gen())
    zeros = out == 0
    assert (zeros.sum(dim=(1, 2, 3, 4)) == 4 * 5 * 6).all()
    starts = set()
    for b in range(8):
        idx = zeros[b, 0].nonzero()
        lo, hi = idx.min(0).values, idx.max(0).values
        assert (hi - lo + 1).tolist() == [4, 5, 6]  # one solid box
        starts.add(tuple(lo.tolist()))
    assert len(starts) >= 4


@pytest.mark.parametrize(("channels", "memory_format"), [(1, torch.contiguous_format), (3, torch.contiguous_format),
                                                       (3, torch.channels_last_3d)])
def test_apply_per_axis_is_the_three_axis_contraction(channels: int, memory_format: torch.memory_format) -> None:
    x = torch.randn(2, channels, 5, 6, 7, dtype=torch.float64).contiguous(memory_format=memory_format)
    k_d, k_h, k_w = (torch.randn(2, n, n, dtype=torch.float64) for n in (5, 6, 7))
    want = torch.einsum("bid,bjh,bkw,bcdhw->bcijk", k_d, k_h, k_w, x)
    out = apply_per_axis(x, [k_d, k_h, k_w])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous()
    assert apply_per_axis(x.float(), [k_d, k_h, k_w]).dtype == torch.float32


def profiled(fn) -> list:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return list(prof.events())


def test_yaware_views_copy_nothing_batch_sized() -> None:
    """Every product of ``apply_per_axis`` reads views: ``K_H`` broadcast over the D slices was copied
    (H/W times the batch, twice per view), and crop + resize cloned its tap weights to make them
    contiguous. (H > W here so that copy is batch-sized; the blur's 9 taps per matrix entry stay below
    the batch.)"""
    x = torch.randn(2, 1, 12, 14, 12)
    aug = ViewAugmenter(preset_ops("yaware"))
    big = [e.input_shapes[0] for e in profiled(lambda: aug(x, gen()))
           if e.name == "aten::copy_" and math.prod(e.input_shapes[0]) >= x.numel()]
    assert big == []
    assert "aten::clone" not in {e.name for e in profiled(lambda: crop_resize_matrix(torch.tensor([0, 3]), 9, 12))}


def test_crop_resize_matrix_matches_interpolate_of_the_crop() -> None:
    x = torch.randn(3, 1, 20, 24, 17, dtype=torch.float64)
    sizes, starts = (15, 18, 13), [(1, 0, 3), (5, 6, 0), (0, 3, 4)]
    mats = [crop_resize_matrix(torch.tensor([s[a] for s in starts]), sizes[a], n)
            for a, n in enumerate(x.shape[2:])]
    out = apply_per_axis(x, mats)
    for b, (i, j, k) in enumerate(starts):
        crop = x[b:b + 1, :, i:i + 15, j:j + 18, k:k + 13]
        want = F.interpolate(crop, size=(20, 24, 17), mode="trilinear", align_corners=False)
        torch.testing.assert_close(out[b:b + 1], want, rtol=0, atol=1e-10)


def test_crop_resize_is_per_sample_and_scale_one_is_identity() -> None:
    x = torch.randn(6, 1, 16, 16, 16)
    out = CropResize(1.0, scale=0.75)(x, gen())
    assert not torch.allclose(out, x)
    assert len({round(float(v), 4) for v in out.flatten(1)[:, 0]}) > 1
    torch.testing.assert_close(CropResize(1.0, scale=1.0)(x, gen()), x)


def test_bias_field_is_monai_legendre_field() -> None:
    coeffs = torch.randn(2, 20, dtype=torch.float64) * 0.1
    want = np.stack([RandBiasField()._generate_random_field((5, 7, 6), 3, c.tolist()) for c in coeffs])
    np.testing.assert_allclose(legendre_bias_field(coeffs, (5, 7, 6), 3).numpy(), want, atol=1e-6)
    x = torch.ones(4, 1, 8, 8, 8)
    out = BiasField(1.0, coeff_range=(-0.2, 0.2))(x, gen())
    assert (out > 0).all() and not torch.allclose(out[0], out[1])


def test_affine_theta_rotates_rigidly_and_shifts_in_voxels() -> None:
    x = torch.randn(1, 1, 6, 8, 8)

    def warp(angles: list[float], shifts: list[float]) -> torch.Tensor:
        theta = affine_theta(torch.tensor([angles]), torch.ones(1, 3), torch.tensor([shifts]), x.shape[2:])
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="border")

    torch.testing.assert_close(warp([0, 0, math.pi / 2], [0, 0, 0]), torch.rot90(x, 1, dims=(3, 4)),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(warp([0, 0, 0], [0.25, 0, 0])[..., :6], x[..., 2:], rtol=0, atol=1e-5)
    zero = RandomAffine(1.0, rotate_deg=0, scale=0, translate=0)
    torch.testing.assert_close(zero(x), x, rtol=0, atol=1e-5)
    assert not torch.allclose(RandomAffine(1.0)(x, gen()), x, atol=1e-3)


@pytest.mark.parametrize("op", [RandomFlip(0.5), GaussianBlur(0.5), GaussianNoise(0.5), Cutout(0.5),
                                CropResize(0.5), BiasField(0.5), RandomAffine(0.5)],
                         ids=lambda op: type(op).__name__)
def test_op_applies_to_some_samples_only_keeps_dtype_and_is_seeded(op: torch.nn.Module) -> None:
    x = torch.randn(12, 1, 12, 12, 12, dtype=torch.float64)
    out = op(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    same = [torch.equal(out[b], x[b]) for b in range(12)]
    assert any(same) and not all(same)
    assert torch.equal(op(x, gen(1)), out)
    assert not torch.equal(op(x, gen(2)), out)


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="probability"):
        GaussianNoise(1.5)
    with pytest.raises(ValueError, match="flip axes"):
        RandomFlip(0.5, axes=[3])
    with pytest.raises(ValueError, match="noise sigma"):
        GaussianNoise(0.5, sigma=(1.0, 0.1))


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_samples_an_op_skips_are_returned_bit_identical(p: float) -> None:
    """Ops that skip by an identity parameter (delta kernel, identity matrix, zero noise or field) and
    not by a blend must still leave the skipped samples exactly as they were."""
    x = torch.randn(12, 1, 9, 10, 11, generator=gen(4))
    for spec in preset_ops("full", p=p):
        out = ViewAugmenter([spec])(x, gen(7))
        untouched = [b for b in range(len(x)) if torch.equal(out[b], x[b])]
        if p == 0.0:
            assert len(untouched) == len(x), spec.name
        else:  # about half the samples are skipped; the others really changed
            assert 2 <= len(untouched) <= 10, (spec.name, len(untouched))


def test_blur_kernels_hold_no_subnormal_weights() -> None:
    """Subnormal tail weights (sigma near 0.145 at t = 2, 0.22 at t = 3) slow CPU matmuls several-fold."""
    from medssl.transforms.intensity import gaussian_kernels

    sigma = torch.linspace(0.1, 1.0, 2001)
    w = gaussian_kernels(sigma, radius=4)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((w > 0) & (w < tiny)).any()
    torch.testing.assert_close(w.sum(1), torch.ones(len(sigma)))
    exact = torch.exp(-(torch.arange(-4.0, 5.0) ** 2) / (2 * sigma[:, None].double() ** 2))
    torch.testing.assert_close(w.double(), exact / exact.sum(1, keepdim=True), rtol=1e-4, atol=1e-19)


def one_by_one(augmenter: ViewAugmenter, x: torch.Tensor, seed: int) -> torch.Tensor:
    g = gen(seed)
    for op in augmenter.ops:
        x = op(x, g)
    return x


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_consecutive_separable_ops_compose_into_one_product(p: float) -> None:
    """flip -> blur (y-aware) and crop -> flip -> blur run as one per-axis product: the same draws and,
    up to rounding, the same views as the ops applied one by one."""
    from medssl.transforms import OpSpec

    specs = {"yaware": preset_ops("yaware", p=p),
             "crop-flip-blur": [OpSpec("crop_resize", p, {"scale": 0.75}), OpSpec("flip", p, {}),
                                OpSpec("blur", p, {"sigma": (0.1, 1.0)})]}
    for name, spec in specs.items():
        aug = ViewAugmenter(spec)
        assert max(len(g) for g in aug.groups) >= 2, name
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            x = torch.randn(6, 1, 9, 10, 11, generator=gen(2), dtype=dtype)
            torch.testing.assert_close(aug(x, gen(5)), one_by_one(aug, x, 5), rtol=tol, atol=tol)


def test_only_adjacent_separable_ops_are_grouped() -> None:
    names = [[type(op).__name__ for op in g] for g in ViewAugmenter(preset_ops("yaware")).groups]
    assert names == [["RandomFlip", "GaussianBlur"], ["GaussianNoise"], ["Cutout"], ["CropResize"]]
    assert all(len(g) == 1 for g in ViewAugmenter(preset_ops("full")).groups)  # affine splits flip/blur


def test_flip_as_exchange_matrices_equals_the_gather() -> None:
    x = torch.randn(8, 2, 5, 6, 7, dtype=torch.float64)
    flip = RandomFlip(0.7)
    apply = torch.tensor([True, False] * 4)
    gathered = flip.augment_selected(x, apply, gen(1))
    assert torch.equal(apply_per_axis(x, flip.axis_matrices(x, apply, gen(1))), gathered)
