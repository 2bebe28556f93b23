"""SimpleNet: the original course baseline CNN for MiniPlaces, layer for layer.

conv 7x7/2 -> 64 (pad 3), maxpool 3/2; bottleneck 1x1 64, 3x3 64, 1x1 256; maxpool 3/2; bottleneck 1x1 128,
3x3 128, 1x1 512; ReLU after every conv; global average pool; linear. No normalization layers, so the
convolution type is the only thing that differs between a native-conv and a custom-conv run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from visionlab.models.layers import ConvClassifier, make_act
from visionlab.models.registry import register_model

__all__ = ["SimpleNet"]

ConvLayer = Callable[..., nn.Module]


class SimpleNet(ConvClassifier):
    """The original SimpleNet.

    Args:
        num_classes: outputs of the final linear layer (100 for MiniPlaces).
        in_channels: image channels (3 for RGB, 1 for Fashion-MNIST).
        conv_layer: constructor with ``nn.Conv2d``'s signature; :class:`visionlab.ops.CustomConv2d` plugs in
            here. Every convolution of the network is built with it.
        act_layer: activation constructor after every convolution (default ``nn.ReLU``, in place when the
            constructor takes ``inplace``).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; for 128x128 input the feature maps are
    64x64 (conv1), 32x32 (block 2), 16x16 (block 3).
    """

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        conv_layer: ConvLayer = nn.Conv2d,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        c, act = conv_layer, act_layer
        self.features = nn.Sequential(
            c(in_channels, 64, kernel_size=7, stride=2, padding=3),
            make_act(act),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            c(64, 64, kernel_size=1, stride=1, padding=0),
            make_act(act),
            c(64, 64, kernel_size=3, stride=1, padding=1),
            make_act(act),
            c(64, 256, kernel_size=1, stride=1, padding=0),
            make_act(act),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            c(256, 128, kernel_size=1, stride=1, padding=0),
            make_act(act),
            c(128, 128, kernel_size=3, stride=1, padding=1),
            make_act(act),
            c(128, 512, kernel_size=1, stride=1, padding=0),
            make_act(act),
        )
        self.num_features = 512
        self.fc = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming (fan_out) for the ReLU convs, as in the original: without batch norm the default uniform
        # init makes the 9-layer stack start with vanishing activations.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("simplenet", takes_conv=True)
def _simplenet(num_classes: int, in_channels: int, image_size: int, conv_layer: ConvLayer) -> nn.Module:
    """The original course SimpleNet (7 convs, no normalization layers)."""
    del image_size  # fully convolutional + global pool: any size >= 32 works
    return SimpleNet(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer)
