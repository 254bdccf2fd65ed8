"""Gradient cache: the chunked step reproduces one-graph gradients (and BN statistics) exactly."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import pytest
import torch
from multiproc import run_ranks
from test_train_loop import ToyVolumes, cfg, make_method, noise_views, state_of
from torch import nn

from medssl.engine.grad_cache import ViewMaker, grad_cache_step
from medssl.engine.train import train_loop
from medssl.errors import ConfigError
from medssl.losses import build_loss
from medssl.methods.base import Method
from medssl.methods.siamese import SiameseContrastive
from medssl.models.backbones import run_stages
from medssl.models.tiny import TinyCNN3d
from medssl.registry import VIEWS

N = 8
LOSSES = [("yaware", {"sigma": 10.0}, "age"), ("infonce", {}, None)]


def without_bn(backbone: TinyCNN3d) -> TinyCNN3d:
    """BatchNorm -> GroupNorm (per-sample statistics): chunking cannot change the forward."""
    for i, m in enumerate(backbone.features):
        if isinstance(m, nn.BatchNorm3d):
            backbone.features[i] = nn.GroupNorm(2, m.num_features)
    return backbone


def siamese(loss: str, kw: dict, label: str | None, bn: bool = True,
            dtype: torch.dtype = torch.float64) -> SiameseContrastive:
    torch.manual_seed(0)
    backbone = TinyCNN3d(width=4) if bn else without_bn(TinyCNN3d(width=4))
    head = (nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16))
            if bn else nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16)))
    return SiameseContrastive(backbone, head, build_loss(loss, **kw), label=label).to(dtype).train()


def data(dtype: torch.dtype = torch.float64) -> tuple[dict, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    image = torch.randn(N, 1, 16, 16, 16, generator=g, dtype=dtype)
    views = [image + 0.3 * torch.randn(image.shape, generator=g, dtype=dtype) for _ in range(2)]
    return {"age": torch.linspace(20.0, 70.0, N, dtype=dtype)}, views


def grads(method: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in method.named_parameters()}


def bn_buffers(method: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b.clone() for k, b in method.named_buffers()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=1e-12, msg=key)


@pytest.mark.parametrize("loss,kw,label", LOSSES)
def test_without_batchnorm_every_chunk_size_gives_the_full_batch_gradient(loss, kw, label) -> None:
    batch, views = data()
    plain = siamese(loss, kw, label, bn=False)
    plain.training_step(batch, views)["loss"].backward()
    want = grads(plain)
    for chunk in (2, 3, N):
        method = siamese(loss, kw, label, bn=False)
        out = grad_cache_step(method, batch, views, chunk)
        assert_same(grads(method), want)
        assert not out["loss"].requires_grad
        torch.testing.assert_close(out["loss"], plain.training_step(batch, views)["loss"].detach())


def one_graph_reference(method: SiameseContrastive, batch: dict, views: list[torch.Tensor] | ViewMaker,
                        chunk: int) -> torch.Tensor:
    """Each chunk (both views of its subjects; made per chunk when ``views`` is a function) forwarded
    WITH autograd in one graph; the loss."""
    z1, z2 = [], []
    for start in range(0, N, chunk):
        sl = slice(start, min(start + chunk, N))
        x1, x2 = views(sl) if callable(views) else (v[sl] for v in views)
        z = method.head(method.backbone(torch.cat([x1, x2])))
        z1.append(z[: len(x1)])
        z2.append(z[len(x1):])
    return method.loss(torch.cat(z1), torch.cat(z2), y=batch["age"])


def test_with_batchnorm_chunks_act_as_ranks_and_update_running_stats_once() -> None:
    batch, views = data()
    full = siamese(*LOSSES[0])
    full.training_step(batch, views)["loss"].backward()
    for chunk in (3, 4):
        ref, method = siamese(*LOSSES[0]), siamese(*LOSSES[0])
        one_graph_reference(ref, batch, views, chunk).backward()
        grad_cache_step(method, batch, views, chunk)
        assert_same(grads(method), grads(ref))
        assert_same(bn_buffers(method), bn_buffers(ref), rtol=1e-12)
        n_chunks = -(-N // chunk)
        assert int(method.backbone.features[1].num_batches_tracked) == n_chunks
        # per-chunk BN differs from whole-batch BN: the comparison above can fail
        delta = (grads(method)["backbone.features.0.weight"]
                 - grads(full)["backbone.features.0.weight"]).abs().max()
        assert delta > 1e-6


class CheckpointedTiny(TinyCNN3d):
    """tiny_cnn3d whose two halves run under ``torch.utils.checkpoint`` (as the real encoders do)."""

    activation_checkpointing = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = [self.features[:6], self.features[6:]]
        return run_stages(self, stages, x).mean(dim=(2, 3, 4))


def test_activation_checkpointing_scale_and_dropout_compose() -> None:
    batch, views = data()
    ref = siamese(*LOSSES[0])
    ref.head.insert(3, nn.Dropout(0.5))  # random draws must be replayed in pass 3
    method = copy.deepcopy(ref)
    ckpt = CheckpointedTiny(width=4).double()
    ckpt.load_state_dict(method.backbone.state_dict())
    method.backbone = ckpt
    torch.manual_seed(5)
    one_graph_reference(ref, batch, views, 3).backward()
    torch.manual_seed(5)
    grad_cache_step(method, batch, views, 3, scale=lambda loss: 8 * loss)
    assert_same({k: g / 8 for k, g in grads(method).items()}, grads(ref))
    assert_same(bn_buffers(method), bn_buffers(ref), rtol=1e-12)


def test_autocast_factory_wraps_the_forward_passes() -> None:
    batch, views = data(torch.float32)
    ref, method = siamese(*LOSSES[0], dtype=torch.float32), siamese(*LOSSES[0], dtype=torch.float32)
    cast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    with cast():  # the reference forwards under autocast and backpropagates outside it
        loss = one_graph_reference(ref, batch, views, 4)
    loss.backward()
    out = grad_cache_step(method, batch, views, 4, autocast=cast)
    assert out["loss"].dtype == torch.float32
    torch.testing.assert_close(out["loss"], loss.detach())
    for key, want in grads(ref).items():  # the reference sums the chunks' gradients in bf16
        assert (grads(method)[key] - want).norm() <= 1e-2 * want.norm(), key
    fp32 = siamese(*LOSSES[0], dtype=torch.float32)
    one_graph_reference(fp32, batch, views, 4).backward()  # bf16 really ran: not the fp32 gradient
    assert (grads(fp32)["head.3.weight"] - grads(method)["head.3.weight"]).abs().max() > 1e-4


# ---- views made per chunk by a function (only the images held for the whole batch) ------------------


class RecordedViews:
    """A ViewMaker: two views of ``image[sl]`` by ``augment`` (global torch RNG); every call recorded."""

    def __init__(self, image: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.image, self.augment = image, augment
        self.calls: list[tuple[slice, list[torch.Tensor]]] = []

    def __call__(self, sl: slice) -> list[torch.Tensor]:
        views = [self.augment(self.image[sl]) for _ in range(2)]
        self.calls.append((sl, [v.clone() for v in views]))
        return views

    def first_pass(self, n_chunks: int) -> list[torch.Tensor]:
        """The views of pass 1 (the first ``n_chunks`` calls), concatenated: ``[(N, 1, D, H, W)] * 2``."""
        return [torch.cat([views[k] for _, views in self.calls[:n_chunks]]) for k in range(2)]


def image_batch(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"image": torch.randn(N, 1, 16, 16, 16, generator=g, dtype=dtype),
            "age": torch.linspace(20.0, 70.0, N, dtype=dtype)}


def with_dropout(method: SiameseContrastive) -> SiameseContrastive:
    method.head.insert(len(method.head) - 1, nn.Dropout(0.5))  # before the last Linear
    return method


def test_views_made_per_chunk_are_remade_bit_for_bit_in_pass_3() -> None:
    """The y-aware augmenter (every op, p=1) and dropout share the RNG; pass 3 remakes pass 1's views."""
    batch = image_batch()
    maker = RecordedViews(batch["image"], VIEWS.build("yaware", p=1.0))
    method = with_dropout(siamese(*LOSSES[0]))
    torch.manual_seed(7)
    grad_cache_step(method, batch, maker, 3)
    chunks = [slice(0, 3), slice(3, 6), slice(6, 8)]
    assert [sl for sl, _ in maker.calls] == chunks + chunks  # pass 1, then pass 3
    for (_, first), (_, again) in zip(maker.calls[:3], maker.calls[3:]):
        assert all(torch.equal(a, b) for a, b in zip(first, again))
    one, two = maker.calls[0][1]
    assert not torch.equal(one, two) and not torch.equal(one, batch["image"][:3])  # the views are random
    assert not torch.equal(maker(slice(0, 3))[0], one)  # without the RNG restored, another draw differs


@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("chunk", [2, 3, N])
def test_views_made_per_chunk_give_the_list_path_on_the_same_views(bn, chunk) -> None:
    batch = image_batch()
    maker = RecordedViews(batch["image"], VIEWS.build("yaware", p=1.0))
    method, listed = siamese(*LOSSES[0], bn=bn), siamese(*LOSSES[0], bn=bn)
    out = grad_cache_step(method, batch, maker, chunk)
    views = maker.first_pass(-(-N // chunk))
    want = grad_cache_step(listed, batch, views, chunk)
    torch.testing.assert_close(out["loss"], want["loss"], rtol=0, atol=0)
    assert_same(grads(method), grads(listed), rtol=1e-12)
    assert_same(bn_buffers(method), bn_buffers(listed), rtol=1e-12)


@pytest.mark.parametrize("bn", [True, False])
def test_views_made_per_chunk_with_dropout_equal_the_one_graph_reference(bn) -> None:
    """Views and dropout masks drawn chunk by chunk, in the order of pass 1, in one autograd graph."""
    batch = image_batch()
    augment = VIEWS.build("yaware", p=1.0)
    ref = with_dropout(siamese(*LOSSES[0], bn=bn))
    method = copy.deepcopy(ref)
    torch.manual_seed(5)
    one_graph_reference(ref, batch, RecordedViews(batch["image"], augment), 3).backward()
    torch.manual_seed(5)
    grad_cache_step(method, batch, RecordedViews(batch["image"], augment), 3)
    assert_same(grads(method), grads(ref))
    assert_same(bn_buffers(method), bn_buffers(ref), rtol=1e-12)


def test_views_made_per_chunk_need_the_image_and_its_device() -> None:
    batch = image_batch()
    maker = RecordedViews(batch["image"], VIEWS.build("yaware", p=1.0))
    with pytest.raises(ValueError, match=r"batch\['image'\].*keys \['age'\]"):
        grad_cache_step(siamese(*LOSSES[0]), {"age": batch["age"]}, maker, 3)
    assert maker.calls == []
    elsewhere = [torch.empty(3, 1, 16, 16, 16, device="meta")] * 2  # not the batch's device: RNG not saved
    with pytest.raises(ValueError, match="make_views returned a view on meta"):
        grad_cache_step(siamese(*LOSSES[0]), batch, lambda sl: elsewhere, 3)


def test_train_loop_with_grad_cache_resumes_exactly_and_equals_plain_steps(tmp_path, monkeypatch) -> None:
    plain, whole, straight, split = (tmp_path / n for n in ("plain", "whole", "straight", "split"))
    train_loop(make_method(), ToyVolumes(), noise_views, cfg(), plain, tensorboard=False)
    summary = train_loop(make_method(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=8), whole,
                         tensorboard=False)
    assert torch.isfinite(torch.tensor(summary["epoch/loss"]))
    a, b = state_of(plain), state_of(whole)  # one chunk = the plain step, one extra forward
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)

    train_loop(make_method(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=3), straight,
               tensorboard=False)
    import medssl.engine.train as engine

    real_save = engine.save_checkpoint

    def save_then_die(path, **state):  # type: ignore[no-untyped-def]
        real_save(path, **state)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_loop(make_method(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=3), split,
                   tensorboard=False)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    train_loop(make_method(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=3), split,
               tensorboard=False)
    a, b = state_of(straight), state_of(split)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert int(a["backbone.features.1.num_batches_tracked"]) == 6 * 3  # 6 steps x 3 chunks


def test_train_loop_makes_on_device_views_per_chunk_twice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sizes: list[int] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return noise_views(x)

    train_loop(make_method(), ToyVolumes(), spy, cfg(epochs=1, grad_cache_chunk=3), tmp_path,
               tensorboard=False)
    per_step = [3, 3, 3, 3, 2, 2]  # chunks of 3, 3, 2 subjects x 2 views, in pass 1 and again in pass 3
    assert sizes == 2 * (per_step + per_step)  # 2 steps of 8 subjects; never the whole batch


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step:UserWarning")  # skipped fp16 step
def test_fp16_grad_scaler_path_equals_the_plain_fp16_step(tmp_path) -> None:
    """GradScaler.scale applies to the cached dL/dz; overflowing first steps are skipped alike."""
    runs = {}
    for name, chunk in (("plain", None), ("one_chunk", 8), ("chunks", 3)):
        train_loop(make_method(), ToyVolumes(), noise_views,
                   cfg(epochs=1, precision="fp16", grad_cache_chunk=chunk), tmp_path / name,
                   tensorboard=False)
        runs[name] = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
    for key, want in runs["plain"]["method"].items():
        torch.testing.assert_close(runs["one_chunk"]["method"][key], want, rtol=1e-4, atol=1e-5)
        assert torch.isfinite(runs["chunks"]["method"][key].float()).all(), key
    assert runs["one_chunk"]["scaler"]["scale"] == runs["plain"]["scaler"]["scale"]


def test_unsupported_option_combinations_are_refused(tmp_path) -> None:
    class Whole(Method):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = TinyCNN3d(width=4)

        def training_step(self, batch, views):  # type: ignore[no-untyped-def]
            return {"loss": self.backbone(views[0]).pow(2).mean()}

    with pytest.raises(ConfigError, match=r"train\.grad_cache_chunk=4 .* Whole"):
        train_loop(Whole(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=4), tmp_path)
    with pytest.raises(ConfigError, match=r"train\.grad_cache_chunk=0"):
        train_loop(make_method(), ToyVolumes(), noise_views, cfg(grad_cache_chunk=0), tmp_path)
    checkpointed = make_method()
    checkpointed.backbone = CheckpointedTiny(width=4)
    with pytest.raises(ConfigError, match=r"train\.compile=true with train\.activation_checkpointing"):
        train_loop(checkpointed, ToyVolumes(), noise_views, cfg(compile=True), tmp_path)


def test_compile_is_in_place_and_keeps_state_dict_keys(tmp_path, monkeypatch) -> None:
    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))  # no C++ build
    method = make_method()
    keys = list(method.state_dict())
    train_loop(method, ToyVolumes(), noise_views, cfg(epochs=1, max_steps_per_epoch=1, compile=True),
               tmp_path, tensorboard=False)
    assert method.backbone._compiled_call_impl is not None
    assert list(state_of(tmp_path)) == keys


# ---- two gloo processes: world=2 grad cache == world=1 on the concatenated batch (no BN) ----------


def _worker(rank: int, out: str) -> dict[str, dict[str, torch.Tensor]]:
    """Rank ``rank`` of 2 (gloo up, run by tests/multiproc.py): its half of the batch through the
    gradient cache, then one train_loop step from weights that differ per rank."""
    batch, views = data()
    half = slice(rank * N // 2, (rank + 1) * N // 2)
    method = siamese(*LOSSES[0], bn=False)
    grad_cache_step(method, {"age": batch["age"][half]}, [v[half] for v in views], 3)
    loop_method = make_method()
    with torch.no_grad():  # different initial weights per rank: train_loop must broadcast
        for p in loop_method.parameters():
            p.add_(0.01 * rank)
    train_loop(loop_method, ToyVolumes(), noise_views,
               cfg(epochs=1, max_steps_per_epoch=1, batch_size=4, grad_cache_chunk=2),
               f"{out}/run{rank}", rank=rank, world=2, tensorboard=False)
    params = {k: p.detach() for k, p in loop_method.named_parameters()}
    return {"grads": grads(method), "params": params}


def test_two_gloo_ranks_match_one_process(tmp_path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("needs torch.distributed")
    ranks = run_ranks(_worker, 2, tmp_path, args=(str(tmp_path),))
    batch, views = data()
    single = siamese(*LOSSES[0], bn=False)
    single.training_step(batch, views)["loss"].backward()
    for r in ranks:
        assert_same(r["grads"], grads(single))
    for key, p in ranks[0]["params"].items():  # same start + averaged gradients: same weights
        assert torch.equal(p, ranks[1]["params"][key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_chunks_equal_the_one_graph_reference_for_resnet18() -> None:
    """resnet18_3d (space-to-depth stem) on CUDA in fp32 with TF32 off: chunks of 4 subjects equal the
    one-graph reference, and one chunk as large as the batch equals the plain step; views made per
    chunk by the augmenter on the GPU too."""
    from medssl.models.backbones import ResNet18Encoder

    def build() -> SiameseContrastive:
        torch.manual_seed(0)
        return SiameseContrastive(ResNet18Encoder(), nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 16)),
                                  build_loss("yaware", sigma=10.0), label="age").cuda().train()

    g = torch.Generator().manual_seed(3)
    image = torch.randn(N, 1, 40, 48, 40, generator=g)
    views = [(image + 0.3 * torch.randn(image.shape, generator=g)).cuda() for _ in range(2)]
    batch = {"age": torch.linspace(20.0, 70.0, N).cuda()}

    def rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        num = sum(float((a[k] - b[k]).norm() ** 2) for k in a)
        return (num / sum(float(b[k].norm() ** 2) for k in b)) ** 0.5

    with torch.backends.cudnn.flags(enabled=True, deterministic=True, benchmark=False, allow_tf32=False):
        plain, whole = build(), build()
        plain.training_step(batch, views)["loss"].backward()
        grad_cache_step(whole, batch, views, N)
        assert rel(grads(whole), grads(plain)) < 1e-5
        ref, method = build(), build()
        one_graph_reference(ref, batch, views, 4).backward()
        grad_cache_step(method, batch, views, 4)
        assert rel(grads(method), grads(ref)) < 1e-5

        # views made per chunk on the GPU from the GPU's RNG: remade bit for bit, same gradients
        batch["image"] = image.cuda()
        augment = VIEWS.build("yaware", p=1.0).cuda()
        ref, method = build(), build()
        torch.manual_seed(5)
        one_graph_reference(ref, batch, RecordedViews(batch["image"], augment), 4).backward()
        torch.manual_seed(5)
        maker = RecordedViews(batch["image"], augment)
        grad_cache_step(method, batch, maker, 4)
        assert rel(grads(method), grads(ref)) < 1e-5
        for (_, first), (_, again) in zip(maker.calls[:2], maker.calls[2:]):
            assert all(torch.equal(a, b) for a, b in zip(first, again))
        on_cpu = {"image": image, "age": batch["age"].cpu()}  # the views' device RNG would not be saved
        with pytest.raises(ValueError, match="move the batch to the device the views are made on"):
            grad_cache_step(build(), on_cpu, lambda sl: [augment(image[sl].cuda()) for _ in range(2)], 4)
