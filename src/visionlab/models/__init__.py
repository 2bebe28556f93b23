"""Model zoo: ``build_model(name, num_classes=..., in_channels=..., image_size=...)``."""

from torch import nn

from visionlab.models.normalize import Normalize
from visionlab.models.registry import (
    CONV_TYPES,
    ImageClassifier,
    build_model,
    list_models,
    register_model,
    resolve_conv,
)
from visionlab.models.simplenet import SimpleNet

__all__ = [
    "CONV_TYPES",
    "ImageClassifier",
    "Normalize",
    "SimpleNet",
    "build_model",
    "list_models",
    "register_model",
    "resolve_conv",
]


@register_model("simplenet", takes_conv=True)
def _simplenet(num_classes: int, in_channels: int, image_size: int, conv_layer: type[nn.Module]) -> nn.Module:
    """The original course SimpleNet (7 convs, no normalization layers)."""
    del image_size  # fully convolutional + global pool: any size >= 32 works
    return SimpleNet(num_classes=num_classes, in_channels=in_channels, conv_layer=conv_layer)
