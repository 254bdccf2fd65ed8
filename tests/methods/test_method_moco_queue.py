"""The MoCo memory queue: FIFO order, sizes, labels; its wiring into the contrastive loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.losses import CombinedObjective, build_loss
from medssl.methods.moco import MemoryQueue, MoCo


def test_queue_is_fifo_with_labels() -> None:
    queue = MemoryQueue(size=5, dim=2, label_dim=1)
    assert len(queue) == 0 and queue.z.shape == (0, 2)
    rows = torch.arange(14.0).view(7, 2)  # row i = [2i, 2i + 1]
    queue.enqueue(rows[:3], torch.tensor([0.0, 1, 2]))
    assert len(queue) == 3
    torch.testing.assert_close(queue.z, rows[:3])
    torch.testing.assert_close(queue.y, torch.tensor([0.0, 1, 2]))
    queue.enqueue(rows[3:7], torch.tensor([3.0, 4, 5, 6]))  # 7 seen, capacity 5: rows 2..6 stay
    assert len(queue) == 5
    torch.testing.assert_close(queue.z, rows[2:7])
    torch.testing.assert_close(queue.y, torch.tensor([2.0, 3, 4, 5, 6]))
    big = torch.arange(100.0, 116.0).view(8, 2)  # more rows than capacity: the newest 5 stay
    queue.enqueue(big, torch.arange(10.0, 18.0))
    torch.testing.assert_close(queue.z, big[3:])
    torch.testing.assert_close(queue.y, torch.arange(13.0, 18.0))


def test_queue_state_round_trips_and_checks_inputs() -> None:
    queue = MemoryQueue(size=4, dim=3, label_dim=2)
    queue.enqueue(torch.randn(6, 3), torch.randn(6, 2))
    clone = MemoryQueue(size=4, dim=3, label_dim=2)
    clone.load_state_dict(queue.state_dict())
    torch.testing.assert_close(clone.z, queue.z)
    torch.testing.assert_close(clone.y, queue.y)
    assert clone.y.shape == (4, 2)
    with pytest.raises(ValueError, match="pass y"):
        queue.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        queue.enqueue(torch.randn(2, 4), torch.randn(2, 2))
    assert MemoryQueue(size=3, dim=2, label_dim=0).y is None


class SpyLoss(nn.Module):
    """Records the queue it receives; the value is a differentiable stand-in."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def forward(self, z1, z2, y=None, bias=None, *, queue_z=None, queue_y=None):  # noqa: ANN001
        self.calls.append({"y": y, "queue_z": queue_z, "queue_y": queue_y})
        return (z1 - z2).pow(2).mean()


def test_moco_feeds_the_queue_of_past_keys_and_labels_to_the_loss(tiny, batch) -> None:
    spy = SpyLoss()
    method = MoCo(tiny.backbone(), tiny.head(), loss=spy, queue_size=20, label="age")
    views = tiny.views(batch["image"])
    method.training_step(batch, views)
    assert all(c["queue_z"] is None for c in spy.calls)  # empty queue on the first step
    assert len(method.queue) == 16  # both views' keys of 8 subjects
    with torch.no_grad():
        k1, k2 = (method.key_head(method.key_backbone(v)) for v in views)
    method.training_step(batch, views)
    last = spy.calls[-1]
    assert last["queue_z"].shape == (16, 16) and last["queue_y"].shape == (16,)
    torch.testing.assert_close(last["queue_z"], torch.cat([k1, k2]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last["queue_y"], torch.cat([batch["age"], batch["age"]]))
    method.training_step(batch, views)  # 48 keys seen, capacity 20
    assert spy.calls[-1]["queue_z"].shape == (20, 16) and len(method.queue) == 20


def test_moco_with_the_yaware_loss_and_its_config_errors(tiny, batch) -> None:
    loss = CombinedObjective(build_loss("yaware", sigma=5.0))
    method = MoCo(tiny.backbone(), tiny.head(), loss=loss, queue_size=32, label="age")
    views = tiny.views(batch["image"])
    first = method.training_step(batch, views)
    second = method.training_step(batch, views)
    # the queue adds candidates, so the same batch's loss changes (the queue is non-empty)
    assert torch.isfinite(second["loss"]) and float(second["queue_len"]) == 32
    assert first["loss"].item() != pytest.approx(second["loss"].item())
    with pytest.raises(ConfigError, match="needs a contrastive loss"):
        MoCo(tiny.backbone(), tiny.head(), loss=None)
    with pytest.raises(ConfigError, match="queue"):
        MoCo(tiny.backbone(), tiny.head(), loss=nn.MSELoss())
