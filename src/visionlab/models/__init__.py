"""Model zoo: ``build_model(name, num_classes=..., in_channels=..., image_size=...)``.

Each model file registers its own builders with :func:`register_model` (timm's habit), so importing the model
modules below is what fills the registry; the registry itself imports none of them.
"""

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
