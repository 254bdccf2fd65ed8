"""``plot_views`` / ``make_views`` and the ``medssl views`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import medssl  # noqa: F401
from medssl.cli import main
from medssl.registry import VIEWS
from medssl.transforms import monai_view_transform
from medssl.transforms.plot import make_views, plot_views

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[2]


def blob() -> torch.Tensor:
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (20, 24, 20)), indexing="ij")
    vol = (z**2 + y**2 + x**2 < 0.7).float() + 0.5 * (z**2 + y**2 + x**2 < 0.2).float()
    return ((vol - vol.mean()) / vol.std())[None]


@pytest.mark.parametrize("backend", ["torch", "monai"])
def test_make_views_is_seeded_and_gives_distinct_views(backend: str) -> None:
    def augmenter() -> object:
        return VIEWS.build("yaware", p=1.0) if backend == "torch" else monai_view_transform("yaware", p=1.0)

    vol = blob()
    views = make_views(vol, augmenter(), n_views=3, seed=5)
    assert views.shape == (3, 20, 24, 20)
    assert torch.equal(make_views(vol, augmenter(), n_views=3, seed=5), views)
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    assert torch.equal(make_views(vol, VIEWS.build("none"), n_views=2)[1], vol[0])


def test_plot_views_writes_a_png_atomically(tmp_path: Path) -> None:
    out = plot_views(blob(), VIEWS.build("full"), tmp_path / "fig.png", n_views=2, seed=0, title="t")
    assert out.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
    with pytest.raises(ValueError, match="one volume"):
        make_views(torch.zeros(2, 4, 4, 4), VIEWS.build("none"))


def test_views_command_draws_refuses_to_overwrite_and_checks_the_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDSSL_CACHE", str(tmp_path / "cache"))
    config = str(ROOT / "configs" / "pretrain" / "yaware_densenet121.yaml")
    small = ["data.synthetic_subjects=16", "data.synthetic_shape=[24,28,24]", "data.shape=[24,24,24]"]
    fig = tmp_path / "views.png"
    assert main(["views", config, *small, "--out", str(fig), "--n-views", "2"]) == 0
    assert fig.read_bytes()[:8] == PNG
    before = fig.stat().st_mtime_ns
    assert main(["views", config, *small, "--out", str(fig)]) == 2
    assert "--overwrite" in capsys.readouterr().err and fig.stat().st_mtime_ns == before
    args = ["views", config, *small, "views.backend=monai", "views.name=cutout", "--out", str(fig)]
    assert main([*args, "--overwrite", "--subject", "3"]) == 0
    assert main([*args, "--overwrite", "--subject", "99"]) == 2
    assert "out of range" in capsys.readouterr().err
