"""Build a training method by name from its parts (what ``medssl pretrain`` does from a config)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medssl.methods.base import Method
from medssl.registry import METHODS


def build_method(name: str, backbone: nn.Module, head: nn.Module | None = None, loss: nn.Module | None = None,
                 *, label: str | None = None, bias: str | None = None,
                 input_shape: list[int] | None = None, **kwargs: Any) -> Method:
    """The method ``name`` around ``backbone`` (+ ``head``) and ``loss``.

    ``label`` / ``bias`` are the batch keys fed to the objective as ``y`` / ``bias`` (``"age"``,
    ``"site"``), passed to the methods that read them; ``input_shape`` (D, H, W) to those that
    reconstruct their input (Model Genesis, VAE), unless ``kwargs`` sets it. ``kwargs`` are the
    method's own settings (unknown keys raise ``ConfigError``).

    Examples:
        >>> import torch
        >>> from medssl.losses import build_loss
        >>> from medssl.models import build_backbone, build_head
        >>> net = build_backbone("tiny_cnn3d", width=4)
        >>> method = build_method("siamese", net, build_head("mlp", net.num_features, out_dim=8),
        ...                       build_loss("yaware", sigma=5.0), label="age")
        >>> x = torch.randn(4, 1, 16, 16, 16)
        >>> method.training_step({"age": torch.tensor([20.0, 30.0, 40.0, 50.0])}, [x, x.flip(-1)])["loss"].ndim
        0
    """
    factory = METHODS.get(name)
    params = inspect.signature(factory).parameters
    for key, value in (("label", label), ("bias", bias)):
        if key in params:
            kwargs[key] = value
    if input_shape is not None and "input_shape" in params:
        kwargs.setdefault("input_shape", list(input_shape))  # a method.input_shape setting wins
    METHODS.check_kwargs(name, kwargs)
    return factory(backbone=backbone, head=head, loss=loss, **kwargs)
