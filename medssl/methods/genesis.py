"""Model Genesis: restore the original volume from a corrupted copy; the encoder is kept.

``x`` = ``batch["image"]`` (the z-scored volume; the views are not used), ``x~ = corrupt(x)``
(``medssl.transforms.genesis.GenesisCorruption``), ``x^ = decoder(backbone(x~))`` and
``L = mean (x^ - x)^2`` (the paper's MSE restoration loss). The decoder starts from the pooled
backbone features (``medssl.models.decoders.VectorDecoder3d``; see there why) and is discarded
after pretraining.

References:
    - [0] Zhou et al., Models Genesis, MedIA 2021, https://arxiv.org/abs/2004.07882
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.methods.base import Method
from medssl.methods.common import check_batch_shape, check_input_shape, refuse_loss
from medssl.models.decoders import VectorDecoder3d
from medssl.registry import METHODS
from medssl.transforms.genesis import GenesisCorruption


@METHODS.register("genesis")
class ModelGenesis(Method):
    """Corrupt -> encode -> decode -> MSE to the original.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: unused (the decoder replaces the projection head); accepted for the method contract.
        loss: must be None (restoration MSE).
        input_shape: (D, H, W) of the volumes, the decoder's output shape (= data.shape).
        decoder_channels: channels of the decoder's last stage (doubling per earlier stage, <= 64).
        shuffle_prob, nonlinear_prob, paint_prob, inpaint_rate, shuffle_window: corruption
            settings, see ``GenesisCorruption`` (defaults: the authors' code).

    ``training_step`` returns ``loss`` and ``corrupted_mse`` (the MSE of the corrupted input, the
    error of an identity "restoration", for scale).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        input_shape: tuple[int, int, int] | None = None,
        decoder_channels: int = 8,
        shuffle_prob: float = 0.5,
        nonlinear_prob: float = 0.9,
        paint_prob: float = 0.9,
        inpaint_rate: float = 0.2,
        shuffle_window: int = 4,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "genesis")
        self.input_shape = check_input_shape(input_shape, "genesis")
        self.backbone = backbone
        self.decoder = VectorDecoder3d(backbone.num_features, self.input_shape,
                                       base_channels=decoder_channels)
        self.corrupt = GenesisCorruption(shuffle_prob=shuffle_prob, shuffle_window=shuffle_window,
                                         nonlinear_prob=nonlinear_prob, paint_prob=paint_prob,
                                         inpaint_rate=inpaint_rate)


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        check_batch_shape(x, self.input_shape, "genesis")
        corrupted = self.corrupt(x)
        restored = self.decoder(self.backbone(corrupted))
        return {
            "loss": F.mse_loss(restored.float(), x.float()),
            "corrupted_mse": F.mse_loss(corrupted.float(), x.float()).detach(),
        }
