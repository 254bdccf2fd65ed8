"""y-aware InfoNCE: positives weighted by a kernel over continuous meta-data (age).

- [0] Dufumier et al., Contrastive Learning with Continuous Proxy Meta-Data for 3D MRI Classification,
  MICCAI 2021, https://arxiv.org/abs/2106.08808
"""

from __future__ import annotations

from medssl.losses.core import KernelInfoNCE
from medssl.losses.kernels import KernelLike, SigmaLike
from medssl.registry import LOSSES


@LOSSES.register("yaware")
class YAwareInfoNCELoss(KernelInfoNCE):
    """``l_a = -sum_{b != a} Wn_ab [s_ab - log sum_{c != a} exp(s_ac)]``, ``W_ab = K(y_a - y_b)``.

    ``normalize="row"`` (paper): ``Wn_ab = W_ab / sum_c W_ac``; ``"col"`` (authors' code):
    ``Wn_ab = W_ab / sum_c W_cb``. ``y=None``, or a dirac kernel with distinct labels, gives ``infonce``;
    dirac with classes gives ``supcon``.

    Published defaults (Dufumier 2021): rbf kernel, sigma = 5 (years), tau = 0.1, batch 64; the authors'
    code uses ``normalize="col"`` and ``reduction="sum_over_N"``.

    Args:
        sigma: kernel bandwidth in the units of ``y`` (None = 5.0; must be None with a callable kernel).
        See :class:`~medssl.losses.core.KernelInfoNCE` for the others.

    Examples:
        >>> import torch
        >>> from medssl.losses import build_loss
        >>> loss = build_loss("yaware", temperature=0.1, sigma=5.0, kernel="rbf")
        >>> z1, z2, age = torch.randn(8, 16), torch.randn(8, 16), 20 + 50 * torch.rand(8)  # age in years
        >>> loss(z1, z2, y=age).shape
        torch.Size([])
        >>> bool(torch.isclose(loss(z1, z2), build_loss("infonce", temperature=0.1)(z1, z2)))  # no y
        True
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: SigmaLike | None = None,
        kernel: KernelLike = "rbf",
        normalize: str = "row",
        base_temperature: float | None = None,
        reduction: str = "mean",
        gather: bool = True,
    ) -> None:
        if sigma is None and not callable(kernel):
            sigma = 5.0
        super().__init__(
            temperature, base_temperature, reduction, kernel, sigma, normalize, gather
        )
