"""ImprovedNet: per-size architecture, identity-initialised blocks, injectable conv, stochastic depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.models import ImprovedNet, build_model
from visionlab.models.improved import BasicBlock
from visionlab.ops import CustomConv2d


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_fashion_mnist_configuration_shapes() -> None:
    model = build_model("improved", num_classes=10, in_channels=1, image_size=28).eval()
    net = model.net
    assert [b.conv2.out_channels for b in net.blocks] == [32, 64, 128]
    assert [b.conv1.stride for b in net.blocks] == [(1, 1), (2, 2), (2, 2)]
    x = torch.rand(3, 1, 28, 28)
    assert net.forward_features(model.normalize(x)).shape == (3, 128, 7, 7)
    assert model(x).shape == (3, 10)


def test_miniplaces_configuration_downsamples_in_the_stem() -> None:
    model = build_model("improved", num_classes=100, in_channels=3, image_size=128).eval()
    net = model.net
    assert isinstance(net.stem[-1], nn.MaxPool2d) and net.stem[0].stride == (2, 2)
    assert len(net.blocks) == 8 and net.fc.in_features == 512
    assert net.forward_features(torch.rand(1, 3, 128, 128)).shape == (1, 512, 4, 4)
    assert [round(b.drop_path.p, 4) for b in net.blocks][-1] == 0.05


def test_every_block_starts_as_the_identity_on_its_shortcut() -> None:
    torch.manual_seed(0)
    block = BasicBlock(8, 8, stride=1, conv_layer=nn.Conv2d).eval()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)  # bn2's weight starts at zero
    down = BasicBlock(8, 16, stride=2, conv_layer=nn.Conv2d).eval()
    torch.testing.assert_close(down(x), torch.relu(down.shortcut(x)), rtol=0, atol=0)
    assert down.shortcut[0].stride == (2, 2) and down.shortcut[0].kernel_size == (1, 1)


def test_custom_conv_gives_the_same_network() -> None:
    torch.manual_seed(0)
    native = build_model("improved", num_classes=10, in_channels=1, image_size=28).double().eval()
    custom = build_model("improved", num_classes=10, in_channels=1, image_size=28, conv="custom").double().eval()
    assert all(isinstance(c, CustomConv2d) for c in _convs(custom)) and len(_convs(custom)) == len(_convs(native))
    custom.load_state_dict(native.state_dict())
    for block in native.net.blocks:  # make the residual branches matter, so every conv is compared
        nn.init.normal_(block.bn2.weight)
    custom.load_state_dict(native.state_dict())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(custom(x), native(x), rtol=1e-10, atol=1e-10)


def test_bad_architectures_are_refused() -> None:
    with pytest.raises(ValueError, match="one positive entry per stage"):
        ImprovedNet(widths=(8, 16), depths=(1,))
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        ImprovedNet(stem_stride=3)
