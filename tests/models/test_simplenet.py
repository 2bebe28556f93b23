"""SimpleNet by value: every constructor call, the layer order, the defaults and the exact initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from visionlab.models import SimpleNet

from .conftest import recording_conv


def test_every_layer_is_built_with_exactly_the_original_arguments() -> None:
    calls = []

    Recording = recording_conv(calls)
    net = SimpleNet(num_classes=7, in_channels=2, conv_layer=Recording)
    spec = [(2, 64, 7, 2, 3), (64, 64, 1, 1, 0), (64, 64, 3, 1, 1), (64, 256, 1, 1, 0), (256, 128, 1, 1, 0),
            (128, 128, 3, 1, 1), (128, 512, 1, 1, 0)]  # fmt: skip
    assert calls == [((i, o), dict(kernel_size=k, stride=s, padding=p)) for i, o, k, s, p in spec]
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Recording", "ReLU", "MaxPool2d"] + ["Recording", "ReLU"] * 3 + ["MaxPool2d"] + [
        "Recording", "ReLU"
    ] * 3  # fmt: skip
    assert all(m.inplace for m in net.features if isinstance(m, nn.ReLU))
    pools = [(m.kernel_size, m.stride, m.padding) for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert pools == [(3, 2, 1), (3, 2, 1)]
    assert (net.fc.in_features, net.fc.out_features, net.num_classes) == (512, 7, 7)


def test_the_defaults() -> None:
    net = SimpleNet()
    assert (net.features[0].in_channels, net.fc.out_features, net.num_classes) == (3, 100, 100)
    assert type(net.features[0]) is nn.Conv2d


def test_init_weights_is_fan_out_kaiming_normal_with_zero_biases_in_order() -> None:
    net = SimpleNet(num_classes=3, in_channels=1)
    fc = {k: v.clone() for k, v in net.fc.state_dict().items()}
    torch.manual_seed(5)
    net._init_weights()
    torch.manual_seed(5)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        out, _, kh, kw = conv.weight.shape
        expected = torch.empty_like(conv.weight).normal_(0, math.sqrt(2.0) / math.sqrt(out * kh * kw))
        assert torch.equal(conv.weight, expected) and torch.equal(conv.bias, torch.zeros(out))
    assert all(torch.equal(v, fc[k]) for k, v in net.fc.state_dict().items())  # the linear layer keeps its init
