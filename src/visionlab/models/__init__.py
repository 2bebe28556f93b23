"""Model zoo: ``build_model(name, num_classes=..., in_channels=..., image_size=...)``."""

from torch import nn

from visionlab.models.foreign import load_classifier
from visionlab.models.improved import ImprovedNet
from visionlab.models.normalize import Normalize
from visionlab.models.pretrained import IMAGENET_MODELS, PretrainedWeights, imagenet_weights_path, load_weights
from visionlab.models.registry import (
    CONV_TYPES,
    ImageClassifier,
    architecture_kwargs,
    build_model,
    list_models,
    register_model,
    resolve_conv,
    takes_conv,
    wrap_model,
)
from visionlab.models.resnet import ResNet18
from visionlab.models.simplenet import SimpleNet
from visionlab.models.vit import VisionTransformer

__all__ = [
    "CONV_TYPES",
    "IMAGENET_MODELS",
    "ImageClassifier",
    "ImprovedNet",
    "Normalize",
    "PretrainedWeights",
    "ResNet18",
    "SimpleNet",
    "VisionTransformer",
    "architecture_kwargs",
    "build_model",
    "imagenet_weights_path",
    "list_models",
    "load_classifier",
    "load_weights",
    "register_model",
    "resolve_conv",
    "takes_conv",
    "wrap_model",
]


@register_model("simplenet", takes_conv=True)
def _simplenet(num_classes: int, in_channels: int, image_size: int, conv_layer: type[nn.Module]) -> nn.Module:
    """The original course SimpleNet (7 convs, no normalization layers)."""
    del image_size  # fully convolutional + global pool: any size >= 32 works
    return SimpleNet(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer)


# Per input size: the original MiniPlaces configuration at 128 px; small-image configurations sized so a
# Fashion-MNIST run fits a CPU budget (patch 4 -> 7x7 tokens; window 4 pads the grid to 8x8, 2x2 windows).
_VIT_CONFIGS: dict[int, dict] = {
    128: dict(patch_size=16, embed_dim=192, depth=4, num_heads=4, window_size=4, window_block_indexes=(0, 2)),
    32: dict(patch_size=4, embed_dim=192, depth=4, num_heads=4, window_size=4, window_block_indexes=(0, 2)),
    28: dict(patch_size=4, stem_channels=32, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0, window_size=4,
             window_block_indexes=(0, 2, 4), drop_path_rate=0.05),
}  # fmt: skip


def _vit_defaults(image_size: int) -> dict:
    return dict(_VIT_CONFIGS.get(image_size, _VIT_CONFIGS[128]))


@register_model("vit", defaults=_vit_defaults)
def _vit(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
    """Vision Transformer (patch embedding, window + global attention, absolute position embedding)."""
    config = {**_vit_defaults(image_size), **kwargs}
    return VisionTransformer(img_size=image_size, in_chans=in_channels, num_classes=num_classes, **config)


# Per input size: full resolution for small images (stages at 28/14/7 or 32/16/8); MiniPlaces 128 px is cut 4x
# in the stem so the four stages see 32, 16, 8, 4, as ResNet-18 does at 224 px.
_IMPROVED_CONFIGS: dict[int, dict] = {
    128: dict(widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), stem_stride=2, drop_path_rate=0.05, dropout=0.1),
    32: dict(widths=(64, 128, 256), depths=(1, 1, 1), stem_stride=1),
    28: dict(widths=(32, 64, 128), depths=(1, 1, 1), stem_stride=1),
}


def _improved_defaults(image_size: int) -> dict:
    return dict(_IMPROVED_CONFIGS.get(image_size, _IMPROVED_CONFIGS[128]))


@register_model("improved", takes_conv=True, defaults=_improved_defaults)
def _improved(num_classes: int, in_channels: int, image_size: int, conv_layer: type[nn.Module], **kwargs) -> nn.Module:
    """Batch-norm residual CNN (SimpleNet improved: BN, residual stages, zero-init blocks)."""
    config = {**_improved_defaults(image_size), **kwargs}
    return ImprovedNet(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer, **config)


def _resnet18_defaults(image_size: int) -> dict:
    return dict(small_input=image_size < 64)  # the 7x7/2 stem + max pool would leave 28 px images 1x1 at layer4


@register_model("resnet18", takes_conv=True, defaults=_resnet18_defaults)
def _resnet18(num_classes: int, in_channels: int, image_size: int, conv_layer: type[nn.Module], **kwargs) -> nn.Module:
    """torchvision's ResNet-18 (1- or 3-channel stem, 3x3/1 stem below 64 px); --pretrained imagenet|PATH."""
    config = {**_resnet18_defaults(image_size), **kwargs}
    return ResNet18(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer, **config)
