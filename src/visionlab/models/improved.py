"""ImprovedNet: the course's "design your own network" answer — SimpleNet with batch norm and residual depth.

stem (3x3 conv -> BN -> ReLU, strided + max-pooled for large inputs) -> stages of pre-activation-free basic
residual blocks (two 3x3 convs with BN, a 1x1 strided projection where the shape changes; the last BN of each
block starts at zero so every block starts as the identity, which is what lets a deep stack train in a few
epochs) -> global average pool -> dropout -> linear. Optional stochastic depth on the residual branches.

Every convolution is built with ``conv_layer``, so ``--use-custom-conv`` swaps in the unfold/fold conv as for
SimpleNet. Per input size (registry defaults): 28/32 px keep full resolution in the stem (stages at 28, 14, 7);
128 px (MiniPlaces) downsample 4x in the stem (conv 3x3/2 + max pool) so the stages see 32x32, as ResNet does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from visionlab.models.layers import ConvClassifier, DropPath, make_act
from visionlab.models.registry import register_model

__all__ = ["IMPROVED_CONFIGS", "BasicBlock", "ImprovedNet", "improved_defaults"]

ConvLayer = Callable[..., nn.Module]
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


class BasicBlock(nn.Module):
    """``relu(shortcut(x) + drop_path(bn2(conv2(relu(bn1(conv1(x)))))))``; 3x3 convs, stride on ``conv1``.

    ``norm_layer(channels)`` builds the three normalization layers (``bn1``, ``bn2``, the projection's; default
    ``nn.BatchNorm2d``) and ``act_layer`` the activation (``relu``, default ``nn.ReLU``, in place when it can be);
    the attribute names stay ``bn*`` / ``relu`` whatever the layers are, so state dict keys do not change.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        conv_layer: ConvLayer,
        drop_path: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(c_out)
        self.conv2 = conv_layer(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(c_out)
        if getattr(self.bn2, "weight", None) is not None:  # the block starts as the identity on its shortcut
            nn.init.zeros_(self.bn2.weight)  # (Goyal et al. 2017)
        self.relu = make_act(act_layer)
        self.drop_path = DropPath(drop_path)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                conv_layer(c_in, c_out, kernel_size=1, stride=stride, padding=0, bias=False), norm_layer(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.shortcut(x) + self.drop_path(out))


class ImprovedNet(ConvClassifier):
    """A batch-norm residual CNN for small (28-32 px) and MiniPlaces-size (128 px) images.

    Args:
        num_classes: classifier outputs.
        in_channels: image channels.
        widths: channels of each stage; every stage after the first halves the resolution.
        depths: residual blocks per stage.
        stem_stride: 1 keeps full resolution; 2 adds a stride-2 stem conv and a 3x3/2 max pool (4x down).
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the blocks.
        dropout: before the classifier.
        conv_layer: constructor with ``nn.Conv2d``'s signature (:class:`visionlab.ops.CustomConv2d` plugs in).
        norm_layer: ``norm_layer(channels)`` for every normalization layer (default ``nn.BatchNorm2d``; e.g.
            ``functools.partial(nn.GroupNorm, 8)``).
        act_layer: activation constructor (default ``nn.ReLU``, in place when it takes ``inplace``).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (1, 1, 1),
        stem_stride: int = 1,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
        conv_layer: ConvLayer = nn.Conv2d,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths or min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"widths {tuple(widths)} and depths {tuple(depths)}: one positive entry per stage")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        stem: list[nn.Module] = [
            conv_layer(in_channels, widths[0], kernel_size=3, stride=stem_stride, padding=1, bias=False),
            norm_layer(widths[0]),
            make_act(act_layer),
        ]
        if stem_stride == 2:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        blocks, c_in = [], widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, width, stride, conv_layer, rates[len(blocks)], norm_layer, act_layer))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head_dropout = nn.Dropout(dropout)
        self.num_features = c_in
        self.fc = nn.Linear(c_in, num_classes)
        self.num_classes = num_classes
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():  # batch norm keeps its own init (blocks zero their last one)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


# Per input size: full resolution for small images (stages at 28/14/7 or 32/16/8); MiniPlaces 128 px is cut 4x
# in the stem so the four stages see 32, 16, 8, 4, as ResNet-18 does at 224 px.
IMPROVED_CONFIGS: dict[int, dict] = {
    128: dict(widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), stem_stride=2, drop_path_rate=0.05, dropout=0.1),
    32: dict(widths=(64, 128, 256), depths=(1, 1, 1), stem_stride=1),
    28: dict(widths=(32, 64, 128), depths=(1, 1, 1), stem_stride=1),
}


def improved_defaults(image_size: int) -> dict:
    """The registered architecture options at ``image_size`` (a copy; the 128 px configuration for other sizes)."""
    return dict(IMPROVED_CONFIGS.get(image_size, IMPROVED_CONFIGS[128]))


@register_model("improved", takes_conv=True, defaults=improved_defaults)
def _improved(num_classes: int, in_channels: int, image_size: int, conv_layer: ConvLayer, **kwargs) -> nn.Module:
    """Batch-norm residual CNN (SimpleNet improved: BN, residual stages, zero-init blocks)."""
    config = {**improved_defaults(image_size), **kwargs}
    return ImprovedNet(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer, **config)
