"""Identical views run the backbone once: the same losses, gradients and BatchNorm statistics as the
``2B`` forward of two copies (views ``none``, the published L_exp / L_thr recipes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from multiproc import run_ranks
from torch import nn

from medssl.config import TrainConfig
from medssl.engine.train import train_loop
from medssl.losses import build_loss
from medssl.methods.siamese import SiameseContrastive
from medssl.models.batchnorm import repeated_batch_statistics
from medssl.models.tiny import TinyCNN3d
from medssl.registry import VIEWS


class Encoder(nn.Sequential):
    num_features = 6

    def __init__(self, momentum: float | None) -> None:
        super().__init__(nn.Conv3d(1, 6, 3), nn.BatchNorm3d(6, momentum=momentum), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten())


def siamese(momentum: float | None) -> SiameseContrastive:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, momentum=momentum), nn.ReLU(), nn.Linear(8, 4))
    return SiameseContrastive(Encoder(momentum), head, build_loss("yaware", sigma=5.0), label="age").double()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_one_forward_equals_two_copies_over_several_steps(momentum: float | None) -> None:
    once, twice = siamese(momentum), siamese(momentum)
    opt_once = torch.optim.SGD(once.parameters(), lr=0.5)
    opt_twice = torch.optim.SGD(twice.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(5, 1, 6, 7, 6, generator=g, dtype=torch.float64)
        batch = {"age": 20 + 40 * torch.rand(5, generator=g, dtype=torch.float64)}
        losses = []
        for method, opt, views in ((once, opt_once, [x, x]), (twice, opt_twice, [x, x.clone()])):
            opt.zero_grad()
            loss = method.training_step(batch, views)["loss"]
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=1e-12)
        for (name, a), b in zip(once.named_parameters(), twice.parameters()):
            # atol: the bias before BatchNorm has a zero gradient, computed as float64 noise (~1e-12)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-9, msg=name)
        opt_once.step()
        opt_twice.step()
    for (name, a), b in zip(once.state_dict().items(), twice.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)  # running stats included


def test_the_rescaled_running_variance_is_that_of_the_copies_in_closed_form() -> None:
    """Independent check: unbiased variance of the k n values, for k = 3."""
    bn = nn.BatchNorm3d(2, momentum=0.3).double()
    x = torch.randn(2, 2, 3, 3, 3, dtype=torch.float64)
    with repeated_batch_statistics(bn, 3):
        bn(x)
    values = torch.cat([x] * 3).transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(bn.running_var, 0.7 * 1.0 + 0.3 * values.var(dim=1, unbiased=True))


class Volumes(torch.utils.data.Dataset):
    """``n`` float64 volumes of 16^3 with ages."""

    def __init__(self, n: int = 12) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 16, 16, 16, generator=g, dtype=torch.float64)
        self.age = 20 + 40 * torch.rand(n, generator=g, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "age": self.age[i]}


def exp_method() -> SiameseContrastive:
    torch.manual_seed(0)
    return SiameseContrastive(TinyCNN3d(width=4), nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16),
                                                                 nn.ReLU(), nn.Linear(16, 8)),
                              build_loss("exp", sigma=5.0), label="age").double()


# float64: the two paths round differently (a batched convolution of B or 2B), and six steps of a
# BatchNorm network amplify float32 rounding past any useful tolerance.
# SGD: Adam would normalise the float-noise gradient of the bias before BatchNorm (truly 0) into steps
ENGINE_CFG = TrainConfig(epochs=2, batch_size=4, optimizer="sgd", lr=1e-2, device="cpu", log_every=1,
                         tensorboard=False)


def train_none_and_copies(run_dir: Path, subjects: int = 12, rank: int = 0, world: int = 1,
                          ) -> tuple[list[int], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Backbone batch sizes seen with views ``none``, and the final state dicts of the ``none`` run and
    of a run whose augmenter returns a copy (the encoder sees 2B volumes)."""
    none, copies = exp_method(), exp_method()
    sizes: list[int] = []
    none.backbone.register_forward_hook(lambda module, inputs, out: sizes.append(len(inputs[0])))
    train_loop(none, Volumes(subjects), VIEWS.build("none"), ENGINE_CFG, run_dir / "none", rank=rank, world=world,
               tensorboard=False)
    train_loop(copies, Volumes(subjects), torch.clone, ENGINE_CFG, run_dir / "copies", rank=rank, world=world,
               tensorboard=False)
    return sizes, none.state_dict(), copies.state_dict()


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], buffers: bool = True) -> None:
    """``a`` and ``b`` agree in every parameter and, with ``buffers``, every BatchNorm statistic."""
    assert list(a) == list(b)
    for name, value in a.items():
        if buffers or not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(value, b[name], rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_views_none_through_the_engine_gives_the_weights_of_two_copies(tmp_path: Path) -> None:
    """``train_loop`` with the ``none`` preset (one tensor for both views) against an augmenter that
    returns a copy: same weights after two epochs."""
    x = Volumes().x[:2]
    assert VIEWS.build("none")(x) is x  # what lets siamese see that the views are identical
    sizes, none, copies = train_none_and_copies(tmp_path)
    assert sizes == [4] * 6  # 3 steps x 2 epochs, each one forward of the 4 subjects (not 8)
    assert_same_state(none, copies)


def _ddp_rank(rank: int, out: str) -> tuple[list[int], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    # 24 subjects: 12 a rank, 3 steps of 4 an epoch (BatchNorm over 2 subjects is too ill-conditioned
    # for a 1e-9 tolerance, even in one process)
    return train_none_and_copies(Path(out) / f"rank{rank}", 24, rank=rank, world=2)


def test_under_ddp_views_none_gives_the_weights_of_two_copies(tmp_path: Path) -> None:
    """Two gloo ranks (DDP-wrapped method, each rank 4 subjects a step): the ``none`` run still runs the
    backbone once per subject, and ends with the weights and BatchNorm statistics of the copies run, on
    both ranks."""
    if not torch.distributed.is_available():
        pytest.skip("needs torch.distributed")
    ranks = run_ranks(_ddp_rank, 2, tmp_path, args=(str(tmp_path),))
    for sizes, none, copies in ranks:
        assert sizes == [4] * 6  # 3 steps x 2 epochs of 4 subjects a rank (not 8)
        assert_same_state(none, copies)
    # DDP kept the weights in step (each rank's running statistics are its own last batch's)
    assert_same_state(ranks[0][1], ranks[1][1], buffers=False)
