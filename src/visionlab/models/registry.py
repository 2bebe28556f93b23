"""Model registry: every architecture is built by name from plain, checkpoint-storable arguments.

A checkpoint stores ``(name, kwargs)`` and :func:`build_model` rebuilds the exact network from them, so no
pickled module ever needs to be loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visionlab.data.kinds import DEFAULT_IMAGE_SIZE
from visionlab.errors import ConfigError
from visionlab.models.normalize import Normalize
from visionlab.ops import CustomConv2d

__all__ = [
    "CONV_TYPES",
    "ImageClassifier",
    "architecture_kwargs",
    "build_model",
    "list_models",
    "register_model",
    "resolve_conv",
    "takes_conv",
    "wrap_model",
]

CONV_TYPES = ("native", "custom")


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    takes_conv: bool
    summary: str
    defaults: Callable[[int], dict[str, Any]] | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str, *, takes_conv: bool = False, defaults: Callable[[int], dict[str, Any]] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable]:
    """Register ``builder(num_classes, in_channels, image_size, [conv_layer,] **kwargs) -> nn.Module``.

    ``takes_conv`` says whether the builder accepts ``conv_layer`` (an ``nn.Conv2d``-compatible constructor),
    so ``--use-custom-conv`` can swap every convolution of the network. ``defaults(image_size)`` returns the
    architecture options the builder uses at that size when none are given (e.g. the ViT's per-size
    configurations); :func:`architecture_kwargs` spells them out so a checkpoint stores the whole architecture.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = _Entry(builder, takes_conv, doc[0] if doc else "", defaults)
        return builder

    return decorate


def list_models() -> dict[str, str]:
    """Registered model names with a one-line summary each."""
    return {name: entry.summary for name, entry in sorted(_REGISTRY.items())}


def architecture_kwargs(name: str, image_size: int, **overrides: Any) -> dict[str, Any]:
    """The architecture options ``name`` is built with at ``image_size``: its registered defaults for that size
    updated by ``overrides``. Storing these (not just the overrides) in a checkpoint keeps it loadable when a
    default configuration is edited later."""
    defaults = _entry(name).defaults
    return {**(defaults(image_size) if defaults else {}), **overrides}


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}", field="model")
    return _REGISTRY[name]


def takes_conv(name: str) -> bool:
    """Whether model ``name`` builds its convolutions with a chosen type (``conv="custom"`` is allowed)."""
    return _entry(name).takes_conv


def resolve_conv(conv: str) -> Callable[..., nn.Module]:
    """``"native"`` -> ``nn.Conv2d``; ``"custom"`` -> the unfold/fold :class:`visionlab.ops.CustomConv2d`."""
    if conv == "native":
        return nn.Conv2d
    if conv == "custom":
        return CustomConv2d
    raise ConfigError(f"conv must be one of {CONV_TYPES}, got {conv!r}", field="conv")


class ImageClassifier(nn.Module):
    """``Normalize`` followed by a backbone: takes pixels in [0, 1], returns logits ``(N, num_classes)``.

    A batch-norm layer whose parameters are all frozen (``requires_grad=False``, as
    :func:`~visionlab.models.finetune.set_backbone_frozen` leaves them) stays in eval mode when the model is put
    in training mode: it normalizes with, and never updates, its running statistics, so a frozen backbone is
    really frozen (a linear probe sees fixed features).
    """

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if mode:
            for m in self.modules():
                if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                    continue
                params = list(m.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    m.eval()
        return self


def wrap_model(model: nn.Module, *, mean: Sequence[float], std: Sequence[float]) -> ImageClassifier:
    """Make any classifier take pixels in [0, 1]: ``Normalize(mean, std)`` in front of ``model``.

    ``model`` is any ``nn.Module`` mapping normalized images ``(N, C, H, W)`` to logits ``(N, classes)`` -- a
    torchvision or timm network, or your own -- and ``mean``/``std`` are the per-channel statistics it was trained
    with (e.g. ImageNet's ``(0.485, 0.456, 0.406)`` / ``(0.229, 0.224, 0.225)``). Everything in visionlab
    (attacks, ``robust_evaluate``, saliency, the trainer) then works on pixels in [0, 1], so an attack's ε is in
    pixel units and its projection onto [0, 1] is the valid image range, whatever the model's preprocessing. The
    model is not copied: its parameters are the wrapper's.

    Raises:
        ValueError: ``mean`` and ``std`` differ in length, or a ``std`` is not positive.
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap_model: model must be an nn.Module, got {type(model).__name__}")
    return ImageClassifier(Normalize(list(mean), list(std)), model)


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = DEFAULT_IMAGE_SIZE,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    conv: str = "native",
    **kwargs: Any,
) -> ImageClassifier:
    """Build a registered model with ``Normalize(mean, std)`` as its first layer.

    Args:
        name: a key of :func:`list_models`.
        num_classes: classifier outputs.
        in_channels: image channels.
        image_size: square input side in pixels (models with a fixed token grid need it); default the data's
            :data:`~visionlab.data.kinds.DEFAULT_IMAGE_SIZE` (MiniPlaces' 128).
        mean: per-channel pixel mean of the training set; default 0.5 per channel.
        std: per-channel pixel standard deviation of the training set; default 0.5 per channel.
        conv: ``"native"`` or ``"custom"``; only for models registered with ``takes_conv``.
        **kwargs: architecture options of the model.
    """
    entry = _entry(name)
    if conv not in CONV_TYPES:
        raise ConfigError(f"conv must be one of {CONV_TYPES}, got {conv!r}", field="conv")
    if entry.takes_conv:
        kwargs["conv_layer"] = resolve_conv(conv)
    elif conv != "native":
        raise ConfigError(f"model {name!r} does not take a convolution type (conv={conv!r})", field="conv")
    net = entry.builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)
    mean = [0.5] * in_channels if mean is None else list(mean)
    std = [0.5] * in_channels if std is None else list(std)
    if len(mean) != in_channels:
        raise ValueError(f"mean/std have {len(mean)} channels but the model takes {in_channels}")
    return ImageClassifier(Normalize(mean, std), net)
