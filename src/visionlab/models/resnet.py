"""ResNet-18 (He et al. 2016, "Deep Residual Learning for Image Recognition"): torchvision's network, adapted.

The module *is* torchvision's ``ResNet`` with ``BasicBlock`` x (2, 2, 2, 2), so its parameter names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``) and a torchvision state dict loads into it
as it is. Three adaptations, each an option of the constructor:

* ``in_channels``: the stem convolution takes 1 (grayscale) or 3 channels; pretrained RGB filters are summed
  over their input channels for a grayscale stem (:mod:`visionlab.models.pretrained`), which gives a gray image
  exactly the response the RGB stem gives that image replicated to three channels.
* ``small_input``: the 7x7/2 stem and its 3x3/2 max pool (4x down, 224 px -> 56) are replaced by a 3x3/1 stem
  without pooling, so 28-32 px images reach the four stages at 28/14/7/4 instead of 7/4/2/1 (the registry's
  default below 64 px, as for CIFAR ResNets).
* ``conv_layer``: every ``nn.Conv2d`` of the network is swapped for this constructor after it is built
  (weights kept), so ``--use-custom-conv`` runs the unfold/fold convolution here as in SimpleNet.

Normalization (ImageNet statistics when pretrained weights are loaded) lives in the model's ``Normalize`` first
layer (:class:`visionlab.models.ImageClassifier`), not here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from visionlab.models.layers import ConvClassifier, make_act, replace_convs
from visionlab.models.registry import register_model

__all__ = ["ResNet18", "resnet18_defaults"]

ConvLayer = Callable[..., nn.Module]


class ResNet18(ConvClassifier, ResNet):
    """torchvision's ResNet-18 with a ``num_classes`` head, a 1- or 3-channel stem and an optional small-input
    stem; the head API of the package's CNNs (:class:`ConvClassifier`: ``forward_head`` pools, ``fc`` classifies).

    Args:
        num_classes: classifier outputs.
        in_channels: image channels of the stem convolution.
        small_input: 3x3/1 stem, no max pool (for images below 64 px); else the 7x7/2 stem + 3x3/2 max pool.
        zero_init_residual: start each block's last batch norm at zero (every block starts as the identity).
        conv_layer: constructor with ``nn.Conv2d``'s signature every convolution is rebuilt with.
        norm_layer: ``norm_layer(channels)`` for every normalization layer (default ``nn.BatchNorm2d``; passed to
            torchvision's ``ResNet``, so the layers keep torchvision's names ``bn1``, ``bn2``, ``downsample.1``).
        act_layer: the activation (default ``nn.ReLU``); another one replaces each ``relu`` module after the
            network is built (in place when its constructor takes ``inplace``).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; ``forward_features`` gives ``(N, 512, H/32, W/32)``
    (``H/8`` with ``small_input``).

    Example::

        >>> ResNet18(num_classes=10, in_channels=1, small_input=True)(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        zero_init_residual: bool = False,
        conv_layer: ConvLayer = nn.Conv2d,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            BasicBlock, [2, 2, 2, 2], num_classes=num_classes, zero_init_residual=zero_init_residual,
            norm_layer=norm_layer,
        )  # fmt: skip
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        if conv_layer is not nn.Conv2d:
            replace_convs(self, conv_layer)
        if act_layer is not nn.ReLU:
            for module in list(self.modules()):  # the stem's and every block's one (reused) activation module
                if isinstance(getattr(module, "relu", None), nn.ReLU):
                    module.relu = make_act(act_layer)
        self.num_classes = num_classes
        self.num_features = self.fc.in_features
        self.small_input = small_input

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_defaults(image_size: int) -> dict:
    """The registered architecture options at ``image_size``: the small-input stem below 64 px (the 7x7/2 stem +
    max pool would leave 28 px images 1x1 at layer4)."""
    return dict(small_input=image_size < 64)


@register_model("resnet18", takes_conv=True, defaults=resnet18_defaults)
def _resnet18(num_classes: int, in_channels: int, image_size: int, conv_layer: ConvLayer, **kwargs) -> nn.Module:
    """torchvision's ResNet-18 (1- or 3-channel stem, 3x3/1 stem below 64 px); --pretrained imagenet|PATH."""
    config = {**resnet18_defaults(image_size), **kwargs}
    return ResNet18(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer, **config)
