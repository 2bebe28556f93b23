"""visionlab.ops.layout: NHWC strides spelled out, one channel and 1x1 kernels included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.ops.layout import channels_last, channels_last_module

CL = torch.channels_last


def test_one_channel_batch_becomes_an_nhwc_view_of_the_same_memory() -> None:
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    assert x.contiguous(memory_format=CL).stride() == (12, 12, 4, 1)  # PyTorch's no-op: NCHW strides kept
    y = channels_last(x)
    assert y.stride() == (12, 1, 4, 1) and y.data_ptr() == x.data_ptr() and torch.equal(y, x)


def test_many_channels_are_copied_into_nhwc_order() -> None:
    x = torch.randn(2, 3, 4, 5)
    y = channels_last(x)
    assert y.stride() == (60, 1, 15, 3) and y.data_ptr() != x.data_ptr() and torch.equal(y, x)
    assert channels_last(y) is y  # already spelled out: returned as it is


@pytest.mark.parametrize(("shape", "strides"), [((6, 1, 3, 3), (9, 1, 3, 1)), ((6, 4, 1, 1), (4, 1, 4, 4))])
def test_weights_with_a_size_one_dimension(shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
    w = torch.randn(shape)
    y = channels_last(w)
    assert y.stride() == strides and torch.equal(y, w)


def test_a_view_with_an_offset_keeps_its_offset() -> None:
    base = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 1, 4, 5)
    x = base[1:]
    assert torch.equal(channels_last(x), x) and channels_last(x).storage_offset() == 20


def test_other_ranks_are_returned_as_they_are() -> None:
    for t in (torch.randn(3), torch.randn(2, 3), torch.randn(2, 3, 4), torch.randn(1, 2, 3, 4, 5)):
        assert channels_last(t) is t


def test_a_convolution_of_a_one_channel_batch_then_runs_nhwc() -> None:
    """The reason for the module: a (N, 1, H, W) batch in PyTorch's own channels-last gives an NCHW output."""
    x, w = torch.randn(2, 1, 8, 8), torch.randn(4, 1, 3, 3)
    plain = F.conv2d(x.contiguous(memory_format=CL), w.contiguous(memory_format=CL))
    assert plain.stride() == (144, 36, 6, 1)  # the first layers of a channels-last model ran NCHW
    out = F.conv2d(channels_last(x), w)
    assert out.stride() == (144, 1, 24, 4) and torch.allclose(out, plain, atol=1e-5)


def test_gradients_flow_through_the_view() -> None:
    x = torch.randn(2, 1, 3, 3, requires_grad=True)
    (channels_last(x) * torch.arange(9.0).reshape(3, 3)).sum().backward()
    assert torch.equal(x.grad, torch.arange(9.0).reshape(1, 1, 3, 3).expand(2, 1, 3, 3))


def test_module_keeps_its_parameter_objects_and_values() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2, 3))
    params = list(model.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 3, 3)
    expected = model.eval()(x)
    assert channels_last_module(model) is model
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert model[0].weight.stride() == (9, 1, 3, 1) and model[2].weight.stride() == (4, 1, 4, 4)
    assert model[4].weight.stride() == (2, 1)  # 2-d: untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(model(channels_last(x)), expected, atol=1e-5)
