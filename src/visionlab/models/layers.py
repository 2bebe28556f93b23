"""Reusable layers shared by the model definitions."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ConvClassifier", "DropPath", "replace_convs"]


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


class ConvClassifier(nn.Module):
    """Shared head API of the CNNs (timm's): ``forward_features`` (subclasses) -> ``forward_head`` (global
    average pool, ``self.head_dropout`` if any, linear ``self.fc``), ``get_classifier`` / ``reset_classifier``
    for fine-tuning with another number of classes."""

    fc: nn.Linear
    num_classes: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        dropout = getattr(self, "head_dropout", None)
        x = dropout(x) if dropout is not None else x
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised linear layer with ``num_classes`` outputs; the rest is kept."""
        self.fc = nn.Linear(self.fc.in_features, num_classes)
        self.num_classes = num_classes


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
