"""View presets: registry, ViewAugmenter contract, and the MONAI per-sample path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

import medssl  # noqa: F401
from medssl.errors import ConfigError
from medssl.registry import VIEWS
from medssl.transforms import ViewAugmenter, monai_view_transform
from medssl.transforms.monai_views import RandIsotropicGaussianSmoothd

PRESETS = ["yaware", "cutout", "none", "full"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_presets_are_registered_with_their_published_ops() -> None:
    assert set(PRESETS) <= set(VIEWS.names())
    names = {p: [s.name for s in VIEWS.build(p).specs] for p in PRESETS}
    assert names["yaware"] == ["flip", "blur", "noise", "cutout", "crop_resize"]
    assert names["cutout"] == ["cutout"] and names["none"] == []
    assert names["full"] == ["flip", "affine", "bias_field", "blur", "noise", "cutout", "crop_resize"]
    yaware = VIEWS.build("yaware")
    assert all(op.p == 0.5 for op in yaware.ops)
    assert yaware.ops[1].sigma == (0.1, 1.0) and yaware.ops[2].sigma == (0.1, 1.0)
    assert yaware.ops[3].fraction == 0.25 and yaware.ops[4].scale == 0.75
    assert VIEWS.build("cutout").ops[0].p == 1.0


@pytest.mark.parametrize("preset", PRESETS)
def test_view_augmenter_contract(preset: str) -> None:
    aug = VIEWS.build(preset)
    assert isinstance(aug, ViewAugmenter)
    x = torch.randn(4, 1, 16, 20, 16)
    original = x.clone()
    out = aug(x, gen(0))
    assert torch.equal(x, original)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert torch.equal(aug(x, gen(0)), out)
    if preset == "none":
        assert torch.equal(out, x) and torch.equal(aug(x), x)
    else:
        assert not torch.equal(aug(x, gen(1)), out)
        view1, view2 = aug(x), aug(x)  # global RNG: two different views
        assert not torch.equal(view1, view2)


def test_yaware_views_differ_across_the_batch_of_identical_volumes() -> None:
    x = torch.randn(1, 1, 16, 16, 16).expand(8, -1, -1, -1, -1).contiguous()
    out = VIEWS.build("yaware", p=1.0)(x, gen())
    assert len({tuple(v[:5].tolist()) for v in out.flatten(1)}) == 8


def test_preset_kwargs_are_checked() -> None:
    with pytest.raises(ConfigError, match="noise_sigma"):
        VIEWS.build("yaware", noise_sigm=(0.1, 1.0))
    with pytest.raises(ConfigError, match="unknown key"):
        monai_view_transform("none", p=0.5)
    with pytest.raises(ValueError, match="batch"):
        VIEWS.build("yaware")(torch.randn(1, 8, 8, 8))


@pytest.mark.parametrize("preset", PRESETS)
def test_monai_path_shape_type_and_per_sample_randomness(preset: str) -> None:
    tr = monai_view_transform(preset)
    assert isinstance(tr, Compose)
    tr.set_random_state(0)
    img = torch.randn(1, 16, 20, 16)
    original = img.clone()
    views = [tr({"image": img})["image"] for _ in range(3)]
    assert torch.equal(img, original), "the MONAI path must not write into the sample"
    for v in views:
        assert type(v) is torch.Tensor and v.dtype == torch.float32 and v.shape == img.shape
    tr.set_random_state(0)
    assert torch.equal(tr({"image": img})["image"], views[0])
    if preset == "none":
        assert all(torch.equal(v, img) for v in views)
    else:
        assert not torch.equal(views[0], views[1]) or not torch.equal(views[1], views[2])


def test_monai_ops_follow_the_yaware_sampling() -> None:
    flip = monai_view_transform("yaware", p=1.0, flip_axes=[2])  # transforms[0] copies the image
    ones = torch.ones(1, 16, 20, 24)
    cut = monai_view_transform("cutout").set_random_state(1)({"image": ones})["image"]
    assert int((cut == 0).sum()) == 4 * 5 * 6
    noise = monai_view_transform("yaware", p=1.0, noise_sigma=(0.3, 0.3)).transforms[3]
    out = noise({"image": torch.zeros(1, 32, 32, 32)})["image"]
    assert abs(float(out.std()) - 0.3) < 0.006
    blur = flip.transforms[2]
    assert isinstance(blur, RandIsotropicGaussianSmoothd)
    blur.set_random_state(0)
    blur({"image": ones})
    inner = blur.rand_smooth
    assert 0.1 <= inner.x <= 1.0 and inner.x == inner.y == inner.z
    x = torch.randn(1, 6, 7, 8)
    flipper = flip.transforms[1]
    assert torch.equal(torch.as_tensor(flipper({"image": x})["image"]), x.flip(3))


def test_monai_path_pickles_for_spawned_workers() -> None:
    import pickle

    tr = monai_view_transform("full")
    tr({"image": torch.randn(1, 12, 12, 12)})  # builds the per-shape transforms
    copy = pickle.loads(pickle.dumps(tr))
    assert copy({"image": torch.randn(1, 12, 12, 12)})["image"].shape == (1, 12, 12, 12)


class _Copies(torch.utils.data.Dataset):
    """The same volume n times, through a MONAI view transform."""

    def __init__(self, transform: object, n: int = 4) -> None:
        self.transform, self.n, self.image = transform, n, torch.randn(1, 12, 12, 12)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform({"image": self.image})["image"]


def test_monai_path_differs_across_workers_and_epochs() -> None:
    dataset = _Copies(monai_view_transform("yaware", p=1.0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, timeout=120,
                                         generator=torch.Generator().manual_seed(0))
    epoch1, epoch2 = [torch.cat(list(loader)) for _ in range(2)]
    assert not torch.equal(epoch1[0], epoch1[1])  # items 0 and 1 come from different workers
    assert not torch.equal(epoch1, epoch2)
    again = torch.cat(list(torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=2, timeout=120, generator=torch.Generator().manual_seed(0))))
    assert torch.equal(again, epoch1)  # reproducible from the loader's seed


def test_monai_blur_samples_the_gaussian_as_the_torch_path_does() -> None:
    """MONAI's default kernel integrates the Gaussian over each voxel (effective std 0.31 instead of 0.09
    voxels at sigma = 0.3); the y-aware blur, scipy and the torch path sample it."""
    from medssl.transforms.intensity import GaussianBlur
    from medssl.transforms.monai_views import RandIsotropicGaussianSmoothd

    delta = torch.zeros(1, 1, 15, 15, 15)
    delta[..., 7, 7, 7] = 1.0
    for sigma in (0.3, 0.5, 1.0):
        ours = GaussianBlur(1.0, sigma=(sigma, sigma))(delta)[0]
        monai = RandIsotropicGaussianSmoothd("image", sigma_range=(sigma, sigma), prob=1.0)
        theirs = torch.as_tensor(monai.set_random_state(0)({"image": delta[0]})["image"])
        torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=1e-5)


def test_monai_views_draw_apply_decisions_and_parameters_independently() -> None:
    """Reseeded per item (as the training loop does), MONAI's dict transforms gave their inner transform
    the same seed: noise was applied only with std < 0.55, and view 2's blur hinged on view 1's."""
    from medssl.transforms import TwoViewsTransform

    views = TwoViewsTransform(monai_view_transform("yaware", p=0.5))
    noise = next(t for t in views.transform.transforms if "Noise" in type(t).__name__)
    x = {"image": torch.zeros(1, 6, 6, 6)}
    stds: list[list[float]] = [[], []]  # noise std when applied, per view
    for seed in range(600):
        views.set_random_state(seed=seed)
        for view in range(2):
            views.transform(x)
            if noise._do_transform:
                stds[view].append(noise.rand_gaussian_noise.std)
    for drawn in map(np.array, stds):
        assert 200 <= len(drawn) <= 400  # applied to about half of 600 items
        assert drawn.max() > 0.9 and 0.48 < drawn.mean() < 0.62  # U(0.1, 1): mean 0.55 (was U(0.1, 0.55))
