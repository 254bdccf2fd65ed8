"""The space-to-depth stem (``medssl.models.stem``) against ``nn.Conv3d`` itself, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medssl.models.backbones import COMPUTE_ONLY_KWARGS
from medssl.models.stem import space_to_depth_conv3d, stem_conv, supports_space_to_depth
from medssl.registry import BACKBONES


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
