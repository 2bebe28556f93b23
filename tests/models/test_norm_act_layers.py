"""``norm_layer`` / ``act_layer`` substitution: a model built with other normalization and activation layers
really uses them (every one, computed by hand), keeps its parameter names, and the defaults are today's layers.
Also the one classifier-head mixin every registered model shares."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import ImprovedNet, ResNet18, SimpleNet, VisionTransformer, build_model, list_models
from visionlab.models.improved import BasicBlock
from visionlab.models.layers import ClassifierHead, make_act
from visionlab.models.vit import Block, PatchEmbed

GroupNorm2 = partial(nn.GroupNorm, 2)


def _types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_make_act_builds_in_place_only_when_the_constructor_takes_inplace() -> None:
    relu, silu, gelu = make_act(nn.ReLU), make_act(nn.SiLU), make_act(nn.GELU)
    assert type(relu) is nn.ReLU and relu.inplace and type(silu) is nn.SiLU and silu.inplace
    assert type(gelu) is nn.GELU and gelu.approximate == "none"
    tanh_gelu = make_act(partial(nn.GELU, approximate="tanh"))
    assert type(tanh_gelu) is nn.GELU and tanh_gelu.approximate == "tanh"
    assert not make_act(partial(nn.ReLU, inplace=False)).inplace  # a choice already bound is not overridden


@pytest.mark.parametrize("error", [ValueError("no signature found for builtin"), TypeError("bad __signature__")])
def test_make_act_calls_a_constructor_without_a_readable_signature_with_no_arguments(error: Exception) -> None:
    class Unreadable:
        """A constructor whose signature ``inspect`` cannot read (as a builtin's); records each call's keywords."""

        def __init__(self) -> None:
            self.calls: list[dict] = []

        @property
        def __signature__(self) -> None:
            raise error

        def __call__(self, **kwargs: object) -> nn.Module:
            self.calls.append(kwargs)
            return nn.Tanh()

    constructor = Unreadable()
    assert type(make_act(constructor)) is nn.Tanh and constructor.calls == [{}]


def test_a_basic_block_computes_with_the_given_norm_and_activation_by_hand() -> None:
    torch.manual_seed(0)
    block = BasicBlock(4, 6, 2, nn.Conv2d, norm_layer=GroupNorm2, act_layer=nn.SiLU).eval()
    norms = (block.bn1, block.bn2, block.shortcut[1])
    assert all(type(n) is nn.GroupNorm and n.num_groups == 2 for n in norms) and type(block.relu) is nn.SiLU
    assert torch.equal(block.bn2.weight, torch.zeros(6))  # the zero-init of the last norm applies to any norm
    for n in norms:
        nn.init.normal_(n.weight)
        nn.init.normal_(n.bias)
    x = torch.randn(2, 4, 6, 6)
    gn = [lambda t, n=n: F.group_norm(t, 2, n.weight, n.bias, n.eps) for n in norms]
    out = gn[1](F.conv2d(F.silu(gn[0](F.conv2d(x, block.conv1.weight, stride=2, padding=1))), block.conv2.weight,
                         padding=1))  # fmt: skip
    shortcut = gn[2](F.conv2d(x, block.shortcut[0].weight, stride=2))
    torch.testing.assert_close(block(x), F.silu(shortcut + out), rtol=0, atol=1e-5)


def test_improved_net_uses_the_given_layers_everywhere_and_keeps_its_parameter_names() -> None:
    kw = dict(num_classes=3, in_channels=2, widths=(4, 8), depths=(1, 1))
    default, swapped = ImprovedNet(**kw), ImprovedNet(**kw, norm_layer=GroupNorm2, act_layer=nn.SiLU)
    assert {nn.BatchNorm2d, nn.ReLU} <= _types(default) and not {nn.GroupNorm, nn.SiLU} & _types(default)
    assert {nn.GroupNorm, nn.SiLU} <= _types(swapped) and not {nn.BatchNorm2d, nn.ReLU} & _types(swapped)
    assert [n for n, _ in default.named_parameters()] == [n for n, _ in swapped.named_parameters()]
    assert swapped(torch.rand(2, 2, 8, 8)).shape == (2, 3)


def test_simplenet_uses_the_given_activation_after_every_convolution() -> None:
    torch.manual_seed(0)
    net = SimpleNet(num_classes=3, in_channels=1, act_layer=nn.GELU).eval()
    acts = [m for m in net.features if not isinstance(m, nn.Conv2d | nn.MaxPool2d)]
    assert [type(m) for m in acts] == [nn.GELU] * 7 and nn.ReLU not in _types(net)
    x = torch.rand(1, 1, 32, 32)
    y = x
    for m in net.features:
        y = F.gelu(F.conv2d(y, m.weight, m.bias, m.stride, m.padding)) if isinstance(m, nn.Conv2d) else (
            m(y) if isinstance(m, nn.MaxPool2d) else y)  # fmt: skip
    torch.testing.assert_close(net(x), y.mean(dim=(2, 3)) @ net.fc.weight.T + net.fc.bias, rtol=0, atol=1e-5)
    assert [type(m) for m in SimpleNet().features if not isinstance(m, nn.Conv2d | nn.MaxPool2d)] == [nn.ReLU] * 7


@pytest.mark.parametrize("small_input", [False, True])
def test_resnet18_uses_the_given_norm_and_activation_with_torchvisions_parameter_names(small_input: bool) -> None:
    default = ResNet18(num_classes=3, small_input=small_input)
    swapped = ResNet18(num_classes=3, small_input=small_input, norm_layer=GroupNorm2, act_layer=nn.SiLU)
    assert not {nn.BatchNorm2d, nn.ReLU} & _types(swapped) and {nn.GroupNorm, nn.SiLU} <= _types(swapped)
    assert type(swapped.relu) is nn.SiLU and type(swapped.layer4[1].relu) is nn.SiLU and swapped.relu.inplace
    assert type(swapped.layer2[0].downsample[1]) is nn.GroupNorm
    assert [n for n, _ in default.named_parameters()] == [n for n, _ in swapped.named_parameters()]
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    net = swapped.eval()
    stem = net.maxpool(F.silu(net.bn1(net.conv1(x))))  # the stem's activation is the given one
    torch.testing.assert_close(net.forward_features(x), net.layer4(net.layer3(net.layer2(net.layer1(stem)))))
    block = net.layer1[0]  # and so is each block's
    torch.testing.assert_close(
        block(stem), F.silu(stem + block.bn2(block.conv2(F.silu(block.bn1(block.conv1(stem)))))), rtol=0, atol=1e-6
    )


def test_vit_block_uses_the_given_norm_and_activation_by_hand() -> None:
    torch.manual_seed(0)
    block = Block(8, 2, mlp_ratio=2.0, norm_layer=nn.RMSNorm, act_layer=nn.ReLU).eval()
    assert type(block.norm1) is nn.RMSNorm and type(block.norm2) is nn.RMSNorm and type(block.mlp.act) is nn.ReLU
    x = torch.randn(2, 3, 3, 8)
    y = x + block.attn(F.rms_norm(x, (8,), block.norm1.weight).reshape(2, 9, 8)).view(2, 3, 3, 8)
    mlp = block.mlp
    expected = y + mlp.fc2(F.relu(mlp.fc1(F.rms_norm(y, (8,), block.norm2.weight))))
    torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-5)
    default = Block(8, 2)
    assert type(default.norm1) is nn.LayerNorm and type(default.mlp.act) is nn.GELU


def test_vision_transformer_passes_its_layers_to_every_block_and_the_head_norm() -> None:
    kw = dict(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, window_block_indexes=())
    vit = VisionTransformer(**kw, norm_layer=nn.RMSNorm, act_layer=nn.SiLU)
    assert type(vit.norm) is nn.RMSNorm and nn.LayerNorm not in _types(vit) and nn.GELU not in _types(vit)
    assert [(type(b.norm1), type(b.norm2), type(b.mlp.act)) for b in vit.blocks] == [
        (nn.RMSNorm, nn.RMSNorm, nn.SiLU)
    ] * 2
    default = VisionTransformer(**kw)
    assert [n for n, _ in default.named_parameters() if "norm" not in n] == [
        n for n, _ in vit.named_parameters() if "norm" not in n
    ]  # RMSNorm has no bias; every other parameter keeps its name
    stem = PatchEmbed(4, 3, 8, stem_channels=2, norm_layer=GroupNorm2, act_layer=nn.SiLU)
    assert [type(m) for m in stem.proj] == [nn.Conv2d, nn.GroupNorm, nn.SiLU, nn.Conv2d, nn.GroupNorm, nn.SiLU,
                                            nn.Conv2d]  # fmt: skip


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_registered_model_shares_the_one_classifier_head_api(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, num_classes=4, in_channels=1, image_size=28).net.eval()
    assert isinstance(net, ClassifierHead) and net.get_classifier() is getattr(net, net.classifier_name)
    x = torch.rand(2, 1, 28, 28)
    features = net.forward_head(net.forward_features(x), pre_logits=True)
    assert features.shape == (2, net.num_features)
    torch.testing.assert_close(net(x), net.get_classifier()(features), rtol=0, atol=0)
    net.reset_classifier(3)
    assert net.num_classes == 3 and net(x).shape == (2, 3) and net.get_classifier().in_features == net.num_features
    net.reset_classifier(0)  # no classifier: the model returns its pre-logits features
    assert isinstance(net.get_classifier(), nn.Identity)
    torch.testing.assert_close(net(x), features, rtol=0, atol=0)
