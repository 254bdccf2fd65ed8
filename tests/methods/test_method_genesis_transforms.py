"""Model Genesis corruptions: shape and range kept, identity at zero strength, invertibility."""

from __future__ import annotations

import torch

from medssl.transforms.genesis import (
    GenesisCorruption,
    bezier_curve,
    bezier_intensity,
    interp,
    local_pixel_shuffle,
    paint,
    random_boxes,
)


def test_interp_matches_numpy() -> None:
    import numpy as np

    xp = torch.sort(torch.rand(2, 9), dim=1).values
    fp = torch.rand(2, 9)
    x = torch.rand(2, 50) * 1.2 - 0.1
    out = interp(x, xp, fp)
    for b in range(2):
        ref = np.interp(x[b].numpy(), xp[b].numpy(), fp[b].numpy())
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5)


def test_bezier_identity_on_the_diagonal_and_invertible_otherwise() -> None:
    x = torch.rand(3, 1, 6, 6, 6)
    diagonal = torch.tensor([[[0.2, 0.2], [0.7, 0.7]]]).expand(3, 2, 2)
    no_flip = torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(bezier_intensity(x, diagonal, no_flip), x, atol=1e-5, rtol=0)

    controls = torch.tensor([[[0.9, 0.1], [0.1, 0.9]], [[0.3, 0.8], [0.6, 0.2]],
                             [[1.0, 0.0], [0.0, 1.0]]])
    for flip in (no_flip, torch.ones(3, dtype=torch.bool)):
        y = bezier_intensity(x, controls, flip)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        # one-to-one: the sorted order of intensities is kept (or reversed when flipped)
        order = x.flatten(1).argsort(1)
        ys = y.flatten(1).gather(1, order)
        diffs = ys.diff(dim=1)
        assert bool((diffs <= 1e-6).all() if flip[0] else (diffs >= -1e-6).all())
        # and the inverse map (interpolating the curve the other way) recovers x
        points = torch.cat([torch.zeros(3, 1, 2), controls, torch.ones(3, 1, 2)], dim=1)
        xs, cs = bezier_curve(points)
        cs = torch.where(flip[:, None], cs.flip(1), cs)
        if flip[0]:
            xs, cs = xs.flip(1), cs.flip(1)
        recovered = interp(y.flatten(1), cs, xs)
        assert (recovered[:2] - x.flatten(1)[:2]).abs().max() < 2e-2  # strictly monotone curves


def test_local_pixel_shuffle_permutes_within_windows_and_is_identity_at_zero() -> None:
    x = torch.rand(2, 1, 9, 8, 8)
    torch.testing.assert_close(local_pixel_shuffle(x, 4, 0.0), x)
    y = local_pixel_shuffle(x, 4, 1.0)
    assert y.shape == x.shape and not torch.equal(y, x)
    torch.testing.assert_close(y[:, :, 8:], x[:, :, 8:])  # beyond the last whole window
    for i in range(0, 8, 4):
        for j in range(0, 8, 4):
            for k in range(0, 8, 4):
                a = x[:, :, i:i + 4, j:j + 4, k:k + 4].flatten(1).sort(1).values
                b = y[:, :, i:i + 4, j:j + 4, k:k + 4].flatten(1).sort(1).values
                torch.testing.assert_close(a, b)


def test_painting_keeps_voxels_off_the_mask_and_is_identity_without_boxes() -> None:
    x = torch.rand(3, 1, 12, 12, 12)
    none = random_boxes(3, [12, 12, 12], 0, (1 / 6, 1 / 3), False, x.device)
    torch.testing.assert_close(paint(x, none, inside=True), x)
    everything = torch.ones_like(none)
    torch.testing.assert_close(paint(x, everything, inside=False), x)
    mask = random_boxes(3, [12, 12, 12], 5, (1 / 6, 1 / 3), True, x.device)
    assert mask.any() and not mask.all()
    inpainted = paint(x, mask, inside=True)
    torch.testing.assert_close(inpainted[~mask], x[~mask])
    outpainted = paint(x, mask, inside=False)
    torch.testing.assert_close(outpainted[mask], x[mask])
    for y in (inpainted, outpainted):
        assert y.min() >= 0 and y.max() <= 1


def test_genesis_corruption_keeps_shape_and_range_and_can_be_switched_off() -> None:
    x = 3 * torch.randn(4, 1, 16, 16, 16) + 1
    y = GenesisCorruption()(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    lo, hi = x.flatten(1).min(1).values, x.flatten(1).max(1).values
    assert (y.flatten(1).min(1).values >= lo - 1e-5).all()
    assert (y.flatten(1).max(1).values <= hi + 1e-5).all()
    assert (y - x).abs().mean() > 0.1
    off = GenesisCorruption(shuffle_prob=0, nonlinear_prob=0, paint_prob=0)
    torch.testing.assert_close(off(x), x, atol=1e-5, rtol=1e-5)
