"""device_batches: the batches arrive whole and in order; on CUDA the next copy is issued one step ahead."""

from __future__ import annotations

import pytest
import torch

from medssl.engine.prefetch import device_batches, side_stream
from medssl.engine.train import to_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def host_batches(n: int, pin: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for k in range(n):
        image = torch.randn(4, 1, 8, 8, 8, generator=g)
        views = [image + 1, image - 1]
        batch = {"image": image, "age": torch.full((4,), float(k)), "views": views, "name": ["a"] * 4}
        out.append({key: (v.pin_memory() if pin and isinstance(v, torch.Tensor) else v)
                    for key, v in batch.items()})
    return out


class Counting:
    """``to_device`` that counts its calls."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.calls = device, 0

    def __call__(self, batch: dict) -> dict:
        self.calls += 1
        return to_device(batch, self.device, channels_last=True)


def test_on_cpu_each_batch_is_moved_when_asked_for_and_in_order() -> None:
    batches, move = host_batches(3), Counting(torch.device("cpu"))
    seen = []
    assert side_stream(torch.device("cpu")) is None
    for k, batch in enumerate(device_batches(batches, move, None)):
        assert move.calls == k + 1  # no read-ahead off CUDA
        seen.append(batch)
    assert len(seen) == 3
    for got, want in zip(seen, batches):
        assert torch.equal(got["image"], want["image"]) and got["name"] == want["name"]
        assert got["image"].is_contiguous(memory_format=torch.channels_last_3d)
        assert all(torch.equal(a, b) for a, b in zip(got["views"], want["views"]))


class SlowCopy(Counting):
    """``to_device`` queued behind ~50 ms of busy-waiting on the stream it runs on (the side stream):
    a consumer that did not wait for that stream would read the batch before it arrived."""

    def __call__(self, batch: dict) -> dict:
        torch.cuda._sleep(100_000_000)
        return super().__call__(batch)


@pytest.mark.gpu
@cuda
def test_on_cuda_the_next_batch_is_copied_ahead_and_arrives_intact() -> None:
    device = torch.device("cuda")
    batches, move = host_batches(4, pin=True), SlowCopy(device)
    side = side_stream(device)
    for k, batch in enumerate(device_batches(batches, move, side)):
        assert move.calls == min(k + 2, 4)  # batch k + 1 is already on its way
        first_read = batch["image"].clone()  # queued on the compute stream right away
        want = batches[k]
        assert torch.equal(first_read.cpu(), want["image"])  # fails without compute.wait_stream(side)
        assert torch.equal(batch["views"][1].cpu(), want["views"][1])
        assert torch.equal(batch["age"].cpu(), want["age"])


@pytest.mark.gpu
@cuda
def test_on_cuda_a_batch_in_use_is_not_overwritten_by_the_next_copy() -> None:
    """The compute stream still reads batch k (behind a busy-wait) when batch k is dropped and the next
    copies are issued: without record_stream the allocator would hand batch k's memory to them."""
    device = torch.device("cuda")
    batches = host_batches(6, pin=True)
    side = side_stream(device)
    late_reads = []
    for k, batch in enumerate(device_batches(batches, Counting(device), side)):
        torch.cuda._sleep(100_000_000)  # the compute stream is busy ...
        late_reads.append(batch["image"] * 1)  # ... so this read runs after the next copies are issued
        del batch
    torch.cuda.synchronize()
    for k, read in enumerate(late_reads):
        assert torch.equal(read.cpu(), batches[k]["image"]), k


@pytest.mark.gpu
@cuda
def test_train_loop_on_cuda_gives_the_same_weights_with_and_without_the_prefetch(  # type: ignore[no-untyped-def]
        tmp_path, monkeypatch) -> None:
    """A race between the side-stream copy and the step (a batch read before it arrived, or its memory
    reused too early) would change the weights; cuDNN is made deterministic so equality is exact."""
    from test_train_loop import ToyVolumes, cfg, make_method, noise_views, state_of

    import medssl.engine.feed as feed
    import medssl.engine.train as engine

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    kw = dict(device="cuda", precision="bf16", channels_last=True, epochs=2)
    engine.train_loop(make_method(), ToyVolumes(), noise_views, cfg(**kw), tmp_path / "prefetch",
                      num_workers=2, tensorboard=False)
    monkeypatch.setattr(feed, "side_stream", lambda device: None)  # each batch moved in its step
    engine.train_loop(make_method(), ToyVolumes(), noise_views, cfg(**kw), tmp_path / "plain",
                      num_workers=2, tensorboard=False)
    a, b = state_of(tmp_path / "prefetch"), state_of(tmp_path / "plain")
    for key in a:
        assert torch.equal(a[key], b[key]), key
