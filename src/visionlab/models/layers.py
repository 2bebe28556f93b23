"""Reusable layers shared by the model definitions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

__all__ = ["ClassifierHead", "ConvClassifier", "DropPath", "make_act", "replace_convs"]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``p`` and scale the
    kept ones by ``1 / (1 - p)``; the identity in eval."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ClassifierHead:
    """The head API every model of the package shares (timm's): ``forward`` is ``forward_head(forward_features(x))``;
    ``forward_head`` pools the features (:meth:`pool`, the pre-logits ``(N, num_features)``) and applies the
    linear classifier; ``get_classifier`` / ``reset_classifier`` serve fine-tuning with another number of classes.

    A mixin for ``nn.Module`` subclasses, which provide ``forward_features``, ``pool``, the width
    ``num_features`` and the classifier itself, stored under the attribute named by ``classifier_name``
    (``"fc"`` for the CNNs, ``"head"`` for the ViT: the name is part of every checkpoint's state dict keys).
    """

    classifier_name: ClassVar[str] = "fc"
    num_classes: int
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Features from :meth:`forward_features` -> pre-logits ``(N, num_features)``."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> logits ``(N, num_classes)``; ``pre_logits=True`` returns the pooled features instead."""
        x = self.pool(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised linear classifier with ``num_classes`` outputs (``nn.Identity`` for 0: the
        model then returns its pre-logits features); the rest of the model is kept."""
        head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.init_classifier(head)
        setattr(self, self.classifier_name, head)
        self.num_classes = num_classes

    def init_classifier(self, head: nn.Module) -> None:
        """Initialise a classifier made by :meth:`reset_classifier`; PyTorch's default init unless overridden."""


class ConvClassifier(ClassifierHead, nn.Module):
    """The CNNs' head: :meth:`pool` is a global average pool over ``(N, C, H, W)`` features followed by
    ``self.head_dropout`` if the model has one; the linear classifier is ``self.fc``."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        dropout = getattr(self, "head_dropout", None)
        return dropout(x) if dropout is not None else x


def make_act(act_layer: Callable[..., nn.Module]) -> nn.Module:
    """An activation module from its constructor, in place when the constructor takes ``inplace`` (``nn.ReLU``,
    ``nn.SiLU``: no extra activation tensor is kept) and as it is otherwise (``nn.GELU``); a
    ``functools.partial`` that already binds ``inplace`` keeps its choice."""
    if isinstance(act_layer, functools.partial) and "inplace" in act_layer.keywords:
        return act_layer()
    try:
        takes_inplace = "inplace" in inspect.signature(act_layer).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_inplace = False
    return act_layer(inplace=True) if takes_inplace else act_layer()


def replace_convs(module: nn.Module, conv_layer: Callable[..., nn.Module]) -> nn.Module:
    """Rebuild every ``nn.Conv2d`` inside ``module`` (in place) with ``conv_layer``, keeping its parameters.

    For networks built elsewhere (torchvision's ResNet) whose convolutions cannot be injected at construction:
    the new layer gets the same hyperparameters and the *same* weight and bias parameters, so outputs and state
    dict keys are unchanged. Layers already of type ``conv_layer`` are left alone. Returns ``module``.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and type(child) is not conv_layer:
            new = conv_layer(
                child.in_channels, child.out_channels, child.kernel_size, stride=child.stride, padding=child.padding,
                dilation=child.dilation, groups=child.groups, bias=child.bias is not None,
                padding_mode=child.padding_mode, device="meta",
            )  # fmt: skip
            new.weight = child.weight
            new.bias = child.bias
            setattr(module, name, new)
        else:
            replace_convs(child, conv_layer)
    return module
