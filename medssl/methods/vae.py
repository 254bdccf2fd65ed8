"""A 3D (beta-)VAE whose encoder is the backbone; the mean code is the representation.

``h = backbone(x)`` (B, F), ``mu = W_mu h``, ``log sigma^2 = W_v h`` (B, L),
``z = mu + sigma * eps``, ``x^ = decoder(z)``. Per sample, with a unit-variance Gaussian
likelihood (constants dropped),

    NLL = 1/2 sum_voxels (x - x^)^2,   KL = 1/2 sum_l (mu^2 + sigma^2 - 1 - log sigma^2)
    L = mean_batch (NLL + beta * KL) / n_voxels

(dividing by the voxel count only rescales the step size; beta = 1 is the VAE, beta > 1 the
beta-VAE). The exported encoder is the backbone: ``mu`` is a linear function of its features,
``encode_mean(x)`` gives it directly.

References:
    - [0] Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014
    - [1] Higgins et al., beta-VAE, ICLR 2017
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medssl.methods.base import Method
from medssl.methods.common import check_batch_shape, check_input_shape, refuse_loss
from medssl.models.decoders import VectorDecoder3d
from medssl.registry import METHODS


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per row of (B, L) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> dict[str, torch.Tensor]:
    """``{"loss", "recon", "kl"}``: the negative ELBO per voxel and its two parts per sample."""
    n_voxels = math.prod(x.shape[1:])
    nll = 0.5 * (recon.float() - x.float()).pow(2).flatten(1).sum(dim=1)
    kl = gaussian_kl(mu.float(), logvar.float())
    return {"loss": (nll + beta * kl).mean() / n_voxels, "recon": nll.mean().detach(),
            "kl": kl.mean().detach()}


@METHODS.register("vae")
class VAE(Method):
    """3D VAE with the backbone as encoder.

    Args:
        backbone: encoder (B, 1, D, H, W) -> (B, F); the exported encoder.
        head: unused (mu/logvar layers replace it); accepted for the method contract.
        loss: must be None (negative ELBO).
        input_shape: (D, H, W) of the volumes (= data.shape).
        latent_dim: L, the size of the latent code.
        beta: weight of the KL term (1 = VAE; > 1 = beta-VAE).
        decoder_channels: channels of the decoder's last stage.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        input_shape: tuple[int, int, int] | None = None,
        latent_dim: int = 128,
        beta: float = 1.0,
        decoder_channels: int = 8,
    ) -> None:
        super().__init__()
        refuse_loss(loss, "vae")
        if latent_dim < 1 or beta < 0:
            raise ValueError(f"need latent_dim >= 1 and beta >= 0, got {latent_dim}, {beta}")
        self.input_shape = check_input_shape(input_shape, "vae")
        self.backbone = backbone
        self.to_mu = nn.Linear(backbone.num_features, latent_dim)
        self.to_logvar = nn.Linear(backbone.num_features, latent_dim)
        self.decoder = VectorDecoder3d(latent_dim, self.input_shape, base_channels=decoder_channels)
        self.beta = beta

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each (B, L)."""
        h = self.backbone(x)
        return self.to_mu(h), self.to_logvar(h)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The representation: the posterior mean ``mu`` (B, L)."""
        return self.encode(x)[0]


    def training_step(self, batch: dict, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        check_batch_shape(x, self.input_shape, "vae")
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return vae_loss(x, self.decoder(z), mu, logvar, self.beta)
