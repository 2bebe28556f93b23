"""Grad-CAM: a hand-computed two-layer case, equal to captum's LayerGradCam + bilinear interpolation and to
pytorch-grad-cam's GradCAM, on every registered model and a torchvision one, which layers are usable, the
errors naming them, and that no call leaves a hook, a gradient or a changed mode behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from visionlab.errors import ConfigError
from visionlab.explain import gradcam, gradcam_layers
from visionlab.models import build_model, wrap_model

from .builders import assert_untouched, mixed_state_net, snapshot


def _two_layer() -> nn.Module:
    """A 1x1 convolution to two channels, ``A = (x, 2x - 0.5)``, then a linear map of their spatial means."""
    conv = nn.Conv2d(1, 2, 1)
    linear = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, -0.5]))
        linear.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0], [2.0, 2.0]]))
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


def test_a_hand_computed_two_layer_network() -> None:
    """y_0 = mean(A_0) - mean(A_1): α = (1/4, -1/4), so the map is ReLU((x - (2x - 0.5)) / 4) = ReLU((0.5 - x) / 4);
    the feature map has the image's size, so no interpolation changes it."""
    model = _two_layer()
    x = torch.tensor([[0.0, 0.25], [0.75, 1.0]]).view(1, 1, 2, 2)
    assert gradcam_layers(model, x) == ["0"]
    expected = torch.tensor([[[0.125, 0.0625], [0.0, 0.0]]])
    torch.testing.assert_close(gradcam(model, x, 0), expected)
    # class 1: α = (0, 1/4), A_1 = 2x - 0.5 -> ReLU((2x - 0.5) / 4)
    torch.testing.assert_close(gradcam(model, x, 1), torch.tensor([[[0.0, 0.0], [0.25, 0.375]]]))


def _cnn() -> nn.Module:
    """Conv-BN-ReLU, a 2x pool, conv-ReLU, then a linear head: the layer "5" is a 4x4 map of an 8x8 image."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    )  # fmt: skip
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 8, 8))
    return model.eval()


def _images(n: int = 3, side: int = 8, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(1))


def _captum(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]


@pytest.mark.parametrize("layer", ["0", "2", "3", "4", "5"])
def test_equals_captums_layer_gradcam_with_bilinear_upsampling(layer: str) -> None:
    model, x = _cnn(), _images()
    target = torch.tensor([0, 3, 4])
    ours = gradcam(model, x, target, layer=layer)
    torch.testing.assert_close(ours, _captum(model, model[int(layer)], x, target), rtol=1e-5, atol=1e-7)
    assert ours.shape == (3, 8, 8) and ours.min() >= 0 and ours.max() > 0


def test_equals_pytorch_grad_cams_gradcam_up_to_its_min_max_scaling() -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = _cnn(), _images()
    target = [1, 2, 0]
    ours = gradcam(model, x, torch.tensor(target), layer="5").numpy()
    with GradCAM(model=model, target_layers=[model[5]]) as cam:
        theirs = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in target])
    low = ours.min(axis=(1, 2), keepdims=True)
    scaled = (ours - low) / (1e-7 + ours.max(axis=(1, 2), keepdims=True) - low)
    np.testing.assert_allclose(scaled, theirs, rtol=1e-4, atol=1e-5)


def test_batch_size_and_the_default_target_change_nothing() -> None:
    model, x = _cnn(), _images(5)
    predicted = model(x).argmax(1)
    whole = gradcam(model, x, predicted)
    torch.testing.assert_close(gradcam(model, x), whole)
    torch.testing.assert_close(gradcam(model, x, predicted, batch_size=2), whole)


@pytest.mark.parametrize(
    ("name", "channels", "side", "default"),
    [
        ("simplenet", 1, 28, "net.features"),
        ("improved", 1, 28, "net.blocks"),
        ("resnet18", 3, 32, "net.layer4"),
        ("vit", 3, 32, "net.patch_embed.proj"),
    ],
)
def test_works_on_every_registered_model_at_its_last_feature_map(
    name: str, channels: int, side: int, default: str
) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=channels, image_size=side).eval()
    x = _images(2, side, channels)
    assert gradcam_layers(model, x)[-1] == default
    target = model(x).argmax(1)
    layer = dict(model.named_modules())[default]
    torch.testing.assert_close(gradcam(model, x), _captum(model, layer, x, target), rtol=1e-4, atol=1e-6)


def test_the_vits_token_grid_is_not_a_feature_map() -> None:
    torch.manual_seed(0)
    model = build_model("vit", num_classes=10, in_channels=3, image_size=32).eval()
    x = _images(1, 32)
    assert gradcam_layers(model, x) == ["net.patch_embed.proj"]
    with pytest.raises(ConfigError, match=r"not a convolutional feature map.*net\.patch_embed\.proj") as info:
        gradcam(model, x, layer="net.patch_embed")  # (N, h, w, dim): channels last
    assert info.value.field == "layer"


def test_works_on_a_torchvision_resnet18_wrapped_as_a_foreign_model() -> None:
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=7)
    model = wrap_model(network, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]).eval()
    x = _images(2, 64)
    assert gradcam_layers(model, x)[-1] == "net.layer4"
    target = torch.tensor([3, 6])
    expected = _captum(model, network.layer4, x, target)
    torch.testing.assert_close(gradcam(model, x, target), expected, rtol=1e-4, atol=1e-6)


def test_leaves_the_model_and_the_images_untouched_also_under_inference_mode() -> None:
    model = mixed_state_net(size=8)  # batch norm training, a frozen bias, gradients already there
    before = snapshot(model)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    with torch.inference_mode():
        maps = gradcam(model, x, layer="1")
    assert_untouched(model, before)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    assert not maps.requires_grad
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_an_in_place_relu_after_the_layer_does_not_change_its_map() -> None:
    model = _cnn()
    inplace = nn.Sequential(*[nn.ReLU(inplace=True) if isinstance(m, nn.ReLU) else m for m in model])
    x, target = _images(), torch.tensor([0, 1, 2])
    torch.testing.assert_close(gradcam(inplace, x, target, layer="1"), gradcam(model, x, target, layer="1"))


def test_hooks_are_removed_when_the_model_raises() -> None:
    class FourD(nn.Module):  # a feature map, but no logits
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    model = FourD()
    with pytest.raises(ValueError, match="logits"):
        gradcam(model, _images(1, 4, 1))
    assert not model.conv._forward_hooks and not model._forward_hooks


@pytest.mark.parametrize(
    ("layer", "why"),
    [("8", "not a convolutional feature map"), ("7", "not a convolutional feature map"), ("head", "no such module")],
)
def test_a_layer_that_is_not_a_feature_map_names_the_usable_ones(layer: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        gradcam(_cnn(), _images(), layer=layer)
    assert info.value.field == "layer"
    assert why in str(info.value) and "usable layers: 0, 1, 2, 3, 4, 5, 6" in str(info.value)


def test_a_model_without_a_convolution_is_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    assert gradcam_layers(model, _images()) == []
    with pytest.raises(ConfigError, match="has none") as info:
        gradcam(model, _images())
    assert info.value.field == "method"


def test_bad_batch_size_and_target() -> None:
    with pytest.raises(ConfigError) as info:
        gradcam(_cnn(), _images(), batch_size=0)
    assert info.value.field == "batch_size"
    with pytest.raises(ConfigError) as info:
        gradcam(_cnn(), _images(), target=9)
    assert info.value.field == "target"
