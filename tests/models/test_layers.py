"""Shared layers by value: DropPath's mask and scale, the CNN head (pool, dropout, linear), ``replace_convs``'s
exact constructor call, and ``Normalize``'s arithmetic, dtype, errors and repr."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import ImprovedNet, Normalize
from visionlab.models.layers import ConvClassifier, DropPath, replace_convs

from ..statistical import Statistic
from .conftest import recording_conv


@pytest.mark.statistical(seed=3)
def test_drop_path_draws_one_bernoulli_per_sample_and_rescales_by_hand(stat_seed: int, stat: Statistic) -> None:
    dp = DropPath(0.25).train()
    x = torch.rand(24, 2, 3, 3)
    torch.manual_seed(stat_seed)
    y = dp(x)
    torch.manual_seed(stat_seed)
    keep = torch.empty(24, 1, 1, 1).bernoulli_(0.75)  # one draw per sample, broadcast over the rest
    stat.check("samples kept of 24", keep.sum(), ">", 0)  # both kinds of sample occur
    stat.check("samples kept of 24", keep.sum(), "<", 24)
    assert torch.equal(y, x * (keep / 0.75))
    assert dp.extra_repr() == "p=0.25" and DropPath().p == 0.0


def test_drop_path_of_zero_is_the_very_input_in_training() -> None:
    x = torch.rand(4, 3)
    assert DropPath(0.0).train()(x) is x and DropPath(0.5).eval()(x) is x


def test_forward_head_pools_drops_and_classifies_by_hand() -> None:
    torch.manual_seed(0)
    net = ImprovedNet(num_classes=3, in_channels=1, widths=(4,), depths=(1,), dropout=0.5).train()
    assert net.head_dropout.p == 0.5
    feats = torch.rand(5, 4, 3, 2)
    pooled = feats.mean(dim=(2, 3))
    torch.manual_seed(7)
    logits = net.forward_head(feats)
    torch.manual_seed(7)
    dropped = F.dropout(pooled, 0.5, training=True)
    torch.testing.assert_close(logits, dropped @ net.fc.weight.T + net.fc.bias, rtol=0, atol=1e-6)
    torch.manual_seed(7)
    torch.testing.assert_close(net.forward_head(feats, pre_logits=True), dropped, rtol=0, atol=1e-6)
    net.eval()
    torch.testing.assert_close(net.forward_head(feats), pooled @ net.fc.weight.T + net.fc.bias, rtol=0, atol=1e-6)
    with pytest.raises(NotImplementedError):
        ConvClassifier().forward_features(feats)


def test_replace_convs_calls_the_constructor_with_every_hyperparameter_and_draws_nothing() -> None:
    calls = []

    Recording = recording_conv(calls)
    torch.manual_seed(0)
    inner = nn.Conv2d(4, 6, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=2, bias=False,
                      padding_mode="reflect")  # fmt: skip
    outer = nn.Conv2d(2, 4, 1)
    already = Recording(6, 6, 1)
    calls.clear()
    net = nn.Sequential(outer, nn.Sequential(nn.ReLU(), inner), already)
    weights = (outer.weight, outer.bias, inner.weight)
    state = torch.random.get_rng_state()
    assert replace_convs(net, Recording) is net
    assert torch.equal(torch.random.get_rng_state(), state)  # built on the meta device: no initialisation drawn
    assert calls == [
        ((2, 4, (1, 1)), dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True,
                              padding_mode="zeros", device="meta")),
        ((4, 6, (3, 1)), dict(stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=2, bias=False,
                              padding_mode="reflect", device="meta")),
    ]  # fmt: skip
    assert type(net[0]) is Recording and type(net[1][1]) is Recording and net[2] is already
    assert (net[0].weight, net[0].bias, net[1][1].weight) == weights and net[1][1].bias is None
    x = torch.rand(1, 2, 5, 5)
    torch.testing.assert_close(net[0](x), F.conv2d(x, *weights[:2]), rtol=0, atol=0)


def test_normalize_by_hand_keeps_the_input_dtype() -> None:
    norm = Normalize([0.25, 0.5], [0.5, 2.0])
    assert norm.mean.shape == (1, 2, 1, 1) and norm.mean.dtype == torch.float32
    assert norm.std.shape == (1, 2, 1, 1) and norm.std.dtype == torch.float32
    assert sorted(dict(norm.named_buffers())) == ["mean", "std"]
    x = torch.tensor([[[[0.25, 1.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(norm(x), torch.tensor([[[[0.0, 1.5]], [[0.0, -0.25]]]]))
    half = norm(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16 and torch.equal(half.float(), torch.tensor([[[[0.0, 1.5]], [[0.0, -0.25]]]]))
    assert norm.extra_repr() == "mean=[0.25, 0.5], std=[0.5, 2.0]"
    assert Normalize([0.123456], [1.0 / 3]).extra_repr() == "mean=[0.1235], std=[0.3333]"


def test_normalize_errors_are_exact() -> None:
    with pytest.raises(ValueError, match=r"^Normalize: mean has 2 channels but std has 1$"):
        Normalize([0.5, 0.5], [0.5])
    with pytest.raises(ValueError, match=r"^Normalize: std must be positive, got \[0.5, 0.0\]$"):
        Normalize([0.5, 0.5], [0.5, 0.0])
    with pytest.raises(ValueError, match=r"^Normalize: std must be positive, got \[-1.0\]$"):
        Normalize([0.5], [-1.0])
    assert Normalize([0.5], [1.5]).std.item() == 1.5  # a std above 1 is fine
    norm = Normalize([0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"^Normalize expects \(N, 2, H, W\) pixels in \[0, 1\], got \(2, 2, 3\)$"):
        norm(torch.rand(2, 2, 3))
    with pytest.raises(ValueError, match=r"^Normalize expects \(N, 2, H, W\) pixels in \[0, 1\], got \(1, 3, 2, 2\)$"):
        norm(torch.rand(1, 3, 2, 2))
    assert norm(torch.rand(1, 2, 3, 4)).shape == (1, 2, 3, 4)  # channel count must match, not the width


def test_normalize_statistics_are_float32_whatever_the_default_dtype() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        norm = Normalize([0.1, 0.2], [0.3, 0.4])
    finally:
        torch.set_default_dtype(previous)
    assert norm.mean.dtype == norm.std.dtype == torch.float32
    assert norm.mean.flatten().tolist() == torch.tensor([0.1, 0.2], dtype=torch.float32).tolist()
