"""3D encoders: ``densenet121_3d`` and ``resnet18_3d`` (MONAI's networks), ``alexnet_3d`` (our own).

Contract (ARCHITECTURE.md): ``forward(x (B, C, D, H, W)) -> (B, num_features)``, attribute
``num_features``. Every encoder takes ``activation_checkpointing``: the forward of each stage is then
recomputed in the backward (``torch.utils.checkpoint``, non-reentrant), trading ~30% more compute for
activation memory (what lets DenseNet121 take large contrastive batches on one GPU). BatchNorm running
statistics are updated once per step either way (see ``_bn_stats_frozen``). All encoders accept
``channels_last_3d`` inputs and weights. ``densenet121_3d`` and ``resnet18_3d`` also take
``stem_space_to_depth``: the 7^3 stride-2 stem on 1 input channel is computed as an exact stride-1
convolution on 2x2x2 space-to-depth blocks (:mod:`medssl.models.stem`); same parameters, same outputs up
to float rounding, a different GPU kernel. Both flags change how the network computes, never what it
is: ``COMPUTE_ONLY_KWARGS`` lists them, and encoder cards leave them out.

State-dict layout (what a plain-torch mirror must reproduce; keys are MONAI's own):

- ``densenet121_3d`` = ``monai.networks.nets.DenseNet121(spatial_dims=3, in_channels=C,
  out_channels=1)`` with ``class_layers.out`` (the Linear) replaced by ``nn.Identity``. Keys:
  ``features.{conv0,norm0,denseblock1..4,transition1..3,norm5}.*`` (dense layers
  ``features.denseblockK.denselayerL.layers.{norm1,conv1,norm2,conv2}.*``). Forward:
  ``features`` (conv0 7^3/2 - norm0 - relu0 - maxpool 3/2 - 4 dense blocks with transitions - norm5)
  -> ReLU -> global average pool -> flatten: 1024 features.
- ``resnet18_3d`` = ``monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=C,
  conv1_t_stride=stem_stride, feed_forward=False)`` (basic blocks [2, 2, 2, 2], shortcut type B:
  1x1x1 conv with bias + BN at each downsampling). Keys ``conv1, bn1, layer1..4.{0,1}.{conv1,bn1,
  conv2,bn2,downsample.0,downsample.1}.*``; there is no ``fc``. Forward: conv1 7^3/stem_stride -
  bn1 - ReLU - maxpool 3/2 - layer1..4 - global average pool - flatten: 512 features.
- ``alexnet_3d``: see :class:`AlexNet3d`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from monai.networks.nets import DenseNet121, ResNet
from monai.networks.nets.resnet import ResNetBlock, get_inplanes
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from medssl.models.stem import stem_conv
from medssl.registry import BACKBONES

COMPUTE_ONLY_KWARGS = ("activation_checkpointing", "stem_space_to_depth")

Stage = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _bn_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Recompute context: BatchNorm still normalises with batch statistics but does not update its
    running mean/var/count a second time (``momentum = 0`` leaves the running average unchanged)."""
    saved = [(m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in model.modules() if isinstance(m, _BatchNorm)]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def run_stages(model: nn.Module, stages: Sequence[Stage], x: torch.Tensor) -> torch.Tensor:
    """Apply ``stages`` in order, each under ``torch.utils.checkpoint`` when the model asks for it."""
    use_ckpt = getattr(model, "activation_checkpointing", False) and torch.is_grad_enabled()
    contexts = lambda: (contextlib.nullcontext(), _bn_stats_frozen(model))  # noqa: E731
    for stage in stages:
        if use_ckpt:
            x = checkpoint(stage, x, use_reentrant=False, context_fn=contexts)
        else:
            x = stage(x)
    return x


@BACKBONES.register("densenet121_3d")
class DenseNet121Encoder(DenseNet121):
    """MONAI DenseNet121, 3D, without its classifier: ``(B, C, D, H, W) -> (B, 1024)``.

    Args:
        in_channels: image channels C.
        activation_checkpointing: recompute each stage of ``features`` in the backward.
        stem_space_to_depth: compute ``conv0`` on space-to-depth blocks (see the module docstring).

    Note:
        In ``train()`` mode the input must leave more than one value per channel after the last dense
        block (e.g. batch >= 2 at 32^3), or BatchNorm raises.
    """

    def __init__(
        self, in_channels: int = 1, activation_checkpointing: bool = False, stem_space_to_depth: bool = True
    ) -> None:
        super().__init__(spatial_dims=3, in_channels=in_channels, out_channels=1)
        self.class_layers.out = nn.Identity()
        self.num_features = 1024
        self.activation_checkpointing = activation_checkpointing
        self.stem_space_to_depth = stem_space_to_depth

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features
        return f.pool0(f.relu0(f.norm0(stem_conv(x, f.conv0, self.stem_space_to_depth))))

    def _stages(self) -> list[Stage]:
        children = dict(self.features.named_children())
        for name in ("conv0", "norm0", "relu0", "pool0"):
            children.pop(name)
        return [self._stem, *children.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_layers(run_stages(self, self._stages(), x))


@BACKBONES.register("resnet18_3d")
class ResNet18Encoder(ResNet):
    """MONAI ResNet-18, 3D, without its fully connected layer: ``(B, C, D, H, W) -> (B, 512)``.

    Args:
        in_channels: image channels C.
        stem_stride: stride of the 7^3 stem convolution. Default 2, as in torchvision's ResNet and
            the L_exp authors' 3D ResNet-18. MONAI's default (1) keeps the stem at full resolution
            and costs 7.6x the FLOPs (537 vs 70 GFLOP per 121x145x121 volume, ~9x the CPU time):
            choose it deliberately.
        activation_checkpointing: recompute the stem and each of ``layer1..4`` in the backward.
        stem_space_to_depth: compute ``conv1`` on space-to-depth blocks (stride-2 stem only; see the
            module docstring).
    """

    def __init__(
        self, in_channels: int = 1, stem_stride: int = 2, activation_checkpointing: bool = False,
        stem_space_to_depth: bool = True,
    ) -> None:
        super().__init__(
            block=ResNetBlock, layers=[2, 2, 2, 2], block_inplanes=get_inplanes(), spatial_dims=3,
            n_input_channels=in_channels, conv1_t_stride=stem_stride, feed_forward=False,
        )
        self.num_features = 512
        self.activation_checkpointing = activation_checkpointing
        self.stem_space_to_depth = stem_space_to_depth

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act(self.bn1(stem_conv(x, self.conv1, self.stem_space_to_depth))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = [self._stem, self.layer1, self.layer2, self.layer3, self.layer4]
        return torch.flatten(self.avgpool(run_stages(self, stages, x)), 1)


@BACKBONES.register("alexnet_3d")
class AlexNet3d(nn.Module):
    """The 3D AlexNet of the OpenBHB baselines (Abrol et al. 2021), ending in global average pooling.

    ``features`` is the published ``nn.Sequential`` (same indices, so its keys ``features.0`` ...
    ``features.15`` match): conv 5^3/2 (64) - BN - ReLU - maxpool 3/3 - conv 3^3 (128) - BN - ReLU -
    maxpool 3/3 - conv 3^3 pad 1 (192) - BN - ReLU - conv 3^3 pad 1 (192) - BN - ReLU - conv 3^3 pad 1
    (128) - BN - ReLU (convs with bias). Two deliberate changes, neither touches the parameters:
    the max pools use ``ceil_mode=True`` (the published floor mode needs >= 33^3 inputs; this one
    works from 17^3, and at 121x145x121 the last map is 6x8x6 instead of 5x7x5), and the published
    last maxpool 3/3 + flatten (256 values at 121x145x121) is a global average pool, so the output is
    128 features at any input size. Hand-rolled: MONAI has no 3D AlexNet.

    Shapes: ``(B, C, D, H, W) -> (B, 128)``.
    """

    min_size = 17  # conv 5/2 -> pool 3/3 (ceil) -> conv 3 needs 17 voxels per axis

    def __init__(self, in_channels: int = 1, activation_checkpointing: bool = False) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
            return [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding),
                    nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, 64, 5, stride=2), nn.MaxPool3d(3, stride=3, ceil_mode=True),
            *block(64, 128, 3), nn.MaxPool3d(3, stride=3, ceil_mode=True),
            *block(128, 192, 3, padding=1),
            *block(192, 192, 3, padding=1),
            *block(192, 128, 3, padding=1),
        )
        self.num_features = 128
        self.activation_checkpointing = activation_checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(f"alexnet_3d needs inputs of at least {self.min_size}^3, got {tuple(x.shape)}")
        f = self.features
        stages = [f[0:4], f[4:8], f[8:11], f[11:14], f[14:17]]
        return run_stages(self, stages, x).mean(dim=(2, 3, 4))
