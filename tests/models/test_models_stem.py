"""The space-to-depth stem (``medssl.models.stem``) against ``nn.Conv3d`` itself, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from medssl.models.backbones import COMPUTE_ONLY_KWARGS
from medssl.models.stem import fold_blocks, space_to_depth_conv3d, stem_conv, supports_space_to_depth
from medssl.registry import BACKBONES

CL = torch.channels_last_3d


@pytest.mark.parametrize(("shape", "kernel", "padding", "channels", "bias"), [
    ((2, 1, 21, 17, 19), 7, 3, 1, False),   # the ResNet/DenseNet stem, odd and even sizes mixed
    ((1, 2, 16, 15, 14), 3, 1, 2, True),
    ((1, 1, 9, 10, 11), 5, 0, 1, True),      # no padding: the right edge is cropped, not padded
    ((1, 1, 8, 8, 8), 7, 3, 1, False),
])
def test_space_to_depth_equals_strided_conv(shape, kernel, padding, channels, bias) -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(channels, 4, kernel, stride=2, padding=padding, bias=bias).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ref, out = conv(x), space_to_depth_conv3d(x, conv)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (conv.weight, x), g)
    grads = torch.autograd.grad(out, (conv.weight, x), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_channels_last_input_gives_the_same_result() -> None:
    conv = nn.Conv3d(1, 8, 7, stride=2, padding=3)
    x = torch.randn(2, 1, 19, 22, 17)
    out = space_to_depth_conv3d(x.contiguous(memory_format=torch.channels_last_3d), conv)
    torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fold_blocks_puts_each_voxel_in_its_channel(channels_last: bool) -> None:
    t = torch.randn(2, 3, 6, 4, 8, dtype=torch.float64)
    out = fold_blocks(t, torch.float64, channels_last)
    assert out.shape == (2, 24, 3, 2, 4)
    assert out.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)
    for c in range(3):
        for bd in range(2):
            for bh in range(2):
                for bw in range(2):
                    assert torch.equal(out[:, 8 * c + 4 * bd + 2 * bh + bw], t[:, c, bd::2, bh::2, bw::2])
    assert torch.equal(fold_blocks(t.float(), torch.bfloat16, channels_last),
                       fold_blocks(t, torch.float64, channels_last).bfloat16())  # the cast rides along


def stem_before_issue_18(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``space_to_depth_conv3d`` as it was: fold by reshape (a copy), then channels-last (another), the
    convolution casting the folded input and weight under autocast (and making the weight channels-last)."""
    k, half = conv.kernel_size[0], (conv.kernel_size[0] + 1) // 2
    pads, blocks = [], []
    for size, pad in zip(x.shape[2:], conv.padding):
        blocks.append((size + 2 * pad - k) // 2 + half)
        pads.append((pad, 2 * blocks[-1] - size - pad))
    d, h, w = blocks
    xp = F.pad(x, [p for pair in reversed(pads) for p in pair])
    xs = xp.reshape(*x.shape[:2], d, 2, h, 2, w, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    xs = xs.reshape(x.shape[0], x.shape[1] * 8, d, h, w)
    if x.is_contiguous(memory_format=CL):
        xs = xs.contiguous(memory_format=CL)
    wp = F.pad(conv.weight, (0, 2 * half - k) * 3)
    ws = wp.reshape(wp.shape[0], x.shape[1], half, 2, half, 2, half, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return F.conv3d(xs, ws.reshape(wp.shape[0], x.shape[1] * 8, half, half, half), conv.bias)


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
@pytest.mark.parametrize(("channels", "memory_format"), [(1, CL), (2, CL), (2, torch.contiguous_format)])
def test_stem_is_bit_exact_against_the_previous_path(amp, channels, memory_format) -> None:
    """Folding in the conv's dtype and layout moves the same numbers: outputs, gradients and layout equal."""
    conv = nn.Conv3d(channels, 8, 7, stride=2, padding=3).to(memory_format=memory_format)
    x = torch.randn(2, channels, 19, 22, 17).contiguous(memory_format=memory_format).requires_grad_()
    results = []
    for stem in (stem_before_issue_18, space_to_depth_conv3d):
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            y = stem(x, conv)
        grads = torch.autograd.grad(y.float().mul(torch.linspace(-1, 1, y.numel()).view(y.shape)).sum(),
                                    (x, conv.weight, conv.bias))
        results.append((y, *grads))
    before, after = results
    assert after[0].dtype == (amp or torch.float32) and after[0].stride() == before[0].stride()
    for a, b in zip(after, before):
        assert torch.equal(a, b)


def big_copies(fn, numel: int) -> int:
    """``aten::copy_`` calls of ``fn()`` that write at least ``numel`` elements."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return sum(1 for e in prof.events()
               if e.name == "aten::copy_" and torch.Size(e.input_shapes[0]).numel() >= numel)


def test_stem_copies_the_input_twice_under_autocast() -> None:
    """Padding, then one fold that also casts and lays out: two passes over the volume (there were
    four: pad, fold, channels-last, autocast's cast)."""
    conv = nn.Conv3d(1, 8, 7, stride=2, padding=3).to(memory_format=CL)
    x = torch.randn(2, 1, 20, 24, 20).contiguous(memory_format=CL)

    def run(stem) -> int:
        def call() -> None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                stem(x, conv)
        return big_copies(call, x.numel())

    assert run(space_to_depth_conv3d) == 2
    assert run(stem_before_issue_18) == 4


def test_unsupported_convolutions_fall_back_or_raise() -> None:
    stride1 = nn.Conv3d(1, 4, 7, stride=1, padding=3)
    assert not supports_space_to_depth(stride1)
    assert not supports_space_to_depth(nn.Conv3d(1, 4, 4, stride=2))
    x = torch.randn(1, 1, 12, 12, 12)
    torch.testing.assert_close(stem_conv(x, stride1, space_to_depth=True), stride1(x))
    with pytest.raises(ValueError, match="stride-2"):
        space_to_depth_conv3d(x, stride1)


@pytest.mark.parametrize("name", ["resnet18_3d", "densenet121_3d"])
def test_encoders_compute_the_same_features_with_either_stem(name: str) -> None:
    torch.manual_seed(0)
    plain = BACKBONES.build(name).double().eval()
    fast = BACKBONES.build(name, stem_space_to_depth=True).double().eval()
    fast.load_state_dict(plain.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 1, 33, 40, 35, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-10)
    assert "stem_space_to_depth" in COMPUTE_ONLY_KWARGS


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_space_to_depth_on_cuda_matches_the_float64_reference(memory_format: torch.memory_format) -> None:
    """cuDNN picks other kernels for the folded convolution: fp32 (TF32 off) and bf16 stay close."""
    torch.manual_seed(0)
    conv = nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)
    x = torch.randn(4, 1, 61, 73, 61)
    with torch.no_grad():
        ref = conv.double()(x.double()).float()
    conv, x = conv.float().cuda().to(memory_format=memory_format), x.cuda().contiguous(memory_format=memory_format)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        fp32 = space_to_depth_conv3d(x, conv).cpu()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = space_to_depth_conv3d(x, conv).float().cpu()
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    assert rel(fp32) < 1e-5, rel(fp32)
    assert rel(bf16) < 1e-2, rel(bf16)
