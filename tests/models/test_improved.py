"""ImprovedNet: per-size architecture, identity-initialised blocks, injectable conv, stochastic depth."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import ImprovedNet, build_model
from visionlab.models.improved import BasicBlock
from visionlab.ops import CustomConv2d

from .conftest import recording_conv


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


def _conv(c_in: int, c_out: int, k: int, s: int, p: int):
    return ((c_in, c_out), dict(kernel_size=k, stride=s, padding=p, bias=False))


def test_every_convolution_is_built_as_specified() -> None:
    calls: list = []
    net = ImprovedNet(num_classes=5, in_channels=2, widths=(4, 8), depths=(1, 2), stem_stride=2,
                      drop_path_rate=0.3, dropout=0.25, conv_layer=recording_conv(calls))  # fmt: skip
    assert calls == [
        _conv(2, 4, 3, 2, 1),  # stem
        _conv(4, 4, 3, 1, 1), _conv(4, 4, 3, 1, 1),  # stage 1, block 1: identity shortcut
        _conv(4, 8, 3, 2, 1), _conv(8, 8, 3, 1, 1), _conv(4, 8, 1, 2, 0),  # stage 2, block 1: projection
        _conv(8, 8, 3, 1, 1), _conv(8, 8, 3, 1, 1),  # stage 2, block 2
    ]  # fmt: skip
    stem = net.stem
    assert [type(m) for m in stem] == [type(stem[0]), nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert stem[1].num_features == 4 and stem[2].inplace
    assert (stem[3].kernel_size, stem[3].stride, stem[3].padding) == (3, 2, 1)
    assert [b.conv1.stride for b in net.blocks] == [(1, 1), (2, 2), (1, 1)]
    assert [type(b.shortcut) for b in net.blocks] == [nn.Identity, nn.Sequential, nn.Identity]
    assert net.blocks[1].shortcut[1].num_features == 8 and all(b.relu.inplace for b in net.blocks)
    assert [(b.bn1.num_features, b.bn2.num_features) for b in net.blocks] == [(4, 4), (8, 8), (8, 8)]
    assert [b.drop_path.p for b in net.blocks] == pytest.approx([0.0, 0.15, 0.3])
    assert net.head_dropout.p == 0.25 and (net.fc.in_features, net.fc.out_features, net.num_classes) == (8, 5, 5)
    assert net.eval()(torch.rand(2, 2, 16, 16)).shape == (2, 5)
    assert net.forward_features(torch.rand(2, 2, 16, 16)).shape == (2, 8, 2, 2)  # 16 -> 8 -> 4 (pool) -> 2

    calls.clear()
    flat = ImprovedNet(in_channels=1, widths=(3,), depths=(1,), conv_layer=recording_conv(calls))
    assert calls[0] == _conv(1, 3, 3, 1, 1) and len(flat.stem) == 3  # stride 1: no max pool


def test_the_defaults() -> None:
    net = ImprovedNet()
    assert (net.num_classes, net.stem[0].in_channels, net.stem[0].stride, len(net.stem)) == (100, 3, (1, 1), 3)
    assert [b.conv2.out_channels for b in net.blocks] == [32, 64, 128]
    assert [b.drop_path.p for b in net.blocks] == [0.0, 0.0, 0.0] and net.head_dropout.p == 0.0
    assert type(net.stem[0]) is nn.Conv2d
    assert BasicBlock(4, 4, 1, nn.Conv2d).drop_path.p == 0.0


def test_a_block_by_hand_with_a_live_residual_branch() -> None:
    torch.manual_seed(0)
    for c_in, c_out, stride in [(3, 3, 1), (3, 5, 2), (3, 5, 1), (4, 4, 2)]:
        block = BasicBlock(c_in, c_out, stride=stride, conv_layer=nn.Conv2d).double()
        for bn in [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]:
            with torch.no_grad():
                bn.weight.normal_()
                bn.bias.normal_()
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
        block.eval()
        x = torch.randn(2, c_in, 6, 6, dtype=torch.float64)

        def bn(m: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        out = F.relu(bn(block.bn1, F.conv2d(x, block.conv1.weight, stride=stride, padding=1)))
        out = bn(block.bn2, F.conv2d(out, block.conv2.weight, padding=1))
        if (c_in, c_out, stride) == (3, 3, 1):
            shortcut = x
            assert isinstance(block.shortcut, nn.Identity)
        else:
            shortcut = bn(block.shortcut[1], F.conv2d(x, block.shortcut[0].weight, stride=stride))
        torch.testing.assert_close(block(x), F.relu(shortcut + out), rtol=0, atol=1e-12)


def test_init_weights_draws_fan_out_kaiming_normal_for_every_conv_in_order() -> None:
    net = ImprovedNet(in_channels=2, widths=(4, 8), depths=(1, 1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(11)
    net._init_weights()
    torch.manual_seed(11)
    convs = _convs(net)
    assert len(convs) == 6
    for conv in convs:
        out, _, kh, kw = conv.weight.shape
        expected = torch.empty_like(conv.weight).normal_(0, math.sqrt(2.0) / math.sqrt(out * kh * kw))
        assert torch.equal(conv.weight, expected)
    conv_keys = {f"{name}.weight" for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    for key, value in net.state_dict().items():  # batch norm and the classifier keep their values
        if key not in conv_keys:
            assert torch.equal(value, before[key]), key


def test_bad_architectures_are_refused_with_exact_messages() -> None:
    message = r"^widths {} and depths {}: one positive entry per stage$"
    for widths, depths in [((8, 16), (1,)), ((), ()), ((8,), (0,)), ((0,), (1,)), ((8, 16), (1, 0)), ((8, 0), (1, 1))]:
        with pytest.raises(ValueError, match=message.format(re.escape(str(widths)), re.escape(str(depths)))):
            ImprovedNet(widths=widths, depths=depths)
    assert len(ImprovedNet(widths=(1,), depths=(1,)).blocks) == 1  # width 1 and depth 1 are allowed
    for stride in (0, 3):
        with pytest.raises(ValueError, match=rf"^stem_stride must be 1 or 2, got {stride}$"):
            ImprovedNet(stem_stride=stride)
