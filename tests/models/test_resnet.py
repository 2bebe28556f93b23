"""ResNet-18: torchvision's network and names, the stems, the 1-channel stem by hand, the custom-conv swap."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from visionlab.models import ResNet18, build_model, load_weights
from visionlab.models.layers import replace_convs
from visionlab.ops import CustomConv2d


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_it_is_torchvisions_resnet18_name_for_name_and_output_for_output() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    ours = ResNet18(num_classes=1000).eval()
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    ours.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    assert ours.forward_features(x).shape == (2, 512, 2, 2)
    assert ours.forward_head(ours.forward_features(x), pre_logits=True).shape == (2, 512)


def test_stems_per_input_size() -> None:
    small = build_model("resnet18", num_classes=10, in_channels=1, image_size=28).net
    conv = small.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride, conv.padding) == (1, (3, 3), (1, 1), (1, 1))
    assert isinstance(small.maxpool, nn.Identity) and small.small_input
    assert small.forward_features(torch.rand(2, 1, 28, 28)).shape == (2, 512, 4, 4)  # stages at 28/14/7/4

    large = build_model("resnet18", num_classes=100, in_channels=3, image_size=128).net
    conv = large.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride, conv.padding) == (3, (7, 7), (2, 2), (3, 3))
    assert isinstance(large.maxpool, nn.MaxPool2d) and not large.small_input
    assert large.fc.out_features == 100

    forced = build_model("resnet18", num_classes=10, in_channels=1, image_size=28, small_input=False).net
    assert forced.conv1.kernel_size == (7, 7) and forced.conv1.in_channels == 1


def test_reset_classifier_keeps_the_backbone() -> None:
    net = ResNet18(num_classes=10, in_channels=1, small_input=True)
    before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    net.reset_classifier(5)
    assert net.get_classifier() is net.fc and net.fc.out_features == 5 and net.num_classes == 5
    for key, value in before.items():
        assert torch.equal(net.state_dict()[key], value), key


def test_the_one_channel_stem_sees_a_gray_image_as_the_rgb_stem_sees_it_replicated(resnet18_state_file) -> None:
    """By hand: RGB filters w_c on (g, g, g) give sum_c w_c * g, so the summed filter on g is the same network."""
    weights = load_weights(str(resnet18_state_file), "resnet18")
    weights.tensors = {k: v.double() if v.is_floating_point() else v for k, v in weights.tensors.items()}
    kw = dict(num_classes=10, image_size=32, small_input=False)
    rgb = build_model("resnet18", in_channels=3, mean=[0.45] * 3, std=[0.23] * 3, **kw).double().eval()
    gray = build_model("resnet18", in_channels=1, mean=[0.45], std=[0.23], **kw).double().eval()
    weights.apply(rgb)
    weights.apply(gray)
    gray.net.fc.load_state_dict(rgb.net.fc.state_dict())  # both heads are fresh: make them the same one
    stem = weights.tensors["conv1.weight"]
    torch.testing.assert_close(gray.net.conv1.weight, stem.sum(dim=1, keepdim=True), rtol=0, atol=0)

    x = torch.rand(3, 1, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        gray.net.conv1(gray.normalize(x)), rgb.net.conv1(rgb.normalize(x.repeat(1, 3, 1, 1))), rtol=1e-12, atol=1e-12
    )


def test_replace_convs_keeps_the_very_parameters() -> None:
    net = torchvision.models.resnet18(weights=None)
    params = {name: p for name, p in net.named_parameters()}
    replace_convs(net, CustomConv2d)
    convs = _convs(net)
    assert len(convs) == 20 and all(type(c) is CustomConv2d for c in convs)
    for name, p in net.named_parameters():
        assert p is params[name], name
    assert net.layer2[0].downsample[0].stride == (2, 2) and net.conv1.padding == (3, 3)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 64)])
def test_custom_conv_gives_the_same_network(channels: int, size: int) -> None:
    torch.manual_seed(0)
    kw = dict(num_classes=10, in_channels=channels, image_size=size)
    native = build_model("resnet18", **kw).double().eval()
    custom = build_model("resnet18", conv="custom", **kw).double().eval()
    assert all(type(c) is CustomConv2d for c in _convs(custom)) and len(_convs(custom)) == len(_convs(native)) == 20
    custom.load_state_dict(native.state_dict())
    x = torch.rand(2, channels, size, size, dtype=torch.float64)
    torch.testing.assert_close(custom(x), native(x), rtol=1e-10, atol=1e-10)


def _reference_then_stem(num_classes: int, stem: nn.Conv2d | None, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """torchvision's ResNet-18 built from ``seed``, then (as ours does) the replaced stem's own init and the
    fan-out Kaiming normal draw for it: the exact random numbers our constructor must use."""
    torch.manual_seed(seed)
    reference = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem is None:
        shape = (64, 3, 7, 7)
    else:
        stem.reset_parameters()
        shape = tuple(stem.weight.shape)
    weight = torch.empty(shape).normal_(0, math.sqrt(2.0) / math.sqrt(64 * shape[2] * shape[3]))
    return reference, weight


@pytest.mark.parametrize(
    ("in_channels", "small_input", "stem"),
    [(3, False, None), (1, False, (1, 7, 2, 3)), (1, True, (1, 3, 1, 1)), (3, True, (3, 3, 1, 1))],
)
def test_the_stem_is_drawn_exactly_as_torchvision_then_kaiming_fan_out(in_channels, small_input, stem) -> None:
    spec = (in_channels, 7, 2, 3) if stem is None else stem
    conv = None  # a stem built without drawing, so that its reset_parameters() draws in our constructor's order
    if stem is not None:
        conv = nn.Conv2d(stem[0], 64, stem[1], stem[2], stem[3], bias=False, device="meta").to_empty(device="cpu")
    reference, weight = _reference_then_stem(10, conv)
    torch.manual_seed(0)
    ours = ResNet18(num_classes=10, in_channels=in_channels, small_input=small_input)
    c = ours.conv1
    assert (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) == (spec[0], 64, *spec[1:])
    assert c.bias is None and type(c) is nn.Conv2d
    assert torch.equal(c.weight, weight)
    theirs = reference.state_dict()
    for key, value in ours.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(value, theirs[key]), key
    assert isinstance(ours.maxpool, nn.Identity if small_input else nn.MaxPool2d)


def test_the_defaults_and_zero_init_residual() -> None:
    net = ResNet18()
    assert (net.fc.out_features, net.num_classes, net.conv1.in_channels, net.conv1.kernel_size) == (
        1000,
        1000,
        3,
        (7, 7),
    )
    assert net.small_input is False and isinstance(net.maxpool, nn.MaxPool2d)
    assert all(torch.equal(b.bn2.weight, torch.ones(b.bn2.num_features)) for b in [net.layer1[0], net.layer4[1]])
    zero = ResNet18(num_classes=2, zero_init_residual=True)
    blocks = [b for layer in (zero.layer1, zero.layer2, zero.layer3, zero.layer4) for b in layer]
    assert len(blocks) == 8 and all(not b.bn2.weight.any() for b in blocks)
