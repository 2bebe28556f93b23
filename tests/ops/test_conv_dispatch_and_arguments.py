"""The unfold/fold convolution beyond its values (those are in test_conv.py): which device and memory format every
result has, which of the three code paths runs for each shape, the chunk size its memory budget allows, the pure
``conv2d_backward`` called on its own (the autograd wrapper always passes it every argument, and autograd casts and
drops gradients behind it, so the value tests cannot see these), and each bad argument refused by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.ops import CustomConv2d, conv2d, conv2d_backward, get_unfold_budget, set_unfold_budget
from visionlab.ops import conv as conv_module

CL = torch.channels_last


@pytest.fixture
def budget():
    old = get_unfold_budget()
    yield set_unfold_budget
    set_unfold_budget(old)


# ------------------------------------------------------------------------------------------------ devices
@pytest.mark.parametrize(
    ("channels", "kernel", "groups"),
    [(4, 3, 1), (16, 3, 1), (4, 1, 1), (16, 1, 1), (4, 3, 2)],  # channel-first, channels-last, pointwise, grouped
)
@pytest.mark.parametrize("weight_grad", [True, False])
def test_every_result_is_on_the_inputs_device(channels: int, kernel: int, groups: int, weight_grad: bool) -> None:
    """On the ``meta`` device (shapes only, nothing computed) a buffer allocated on the default device instead of
    the input's fails at once: the check a GPU run would make, on a CPU."""
    x = torch.empty(3, channels, 7, 7, device="meta", requires_grad=True)
    w = torch.empty(8, channels // groups, kernel, kernel, device="meta", requires_grad=weight_grad)
    b = torch.empty(8, device="meta", requires_grad=True)
    out = conv2d(x, w, b, 1, kernel // 2, 1, groups)
    assert out.device.type == "meta" and out.shape == (3, 8, 7, 7)
    grads = torch.autograd.grad(out, [x, w, b] if weight_grad else [x, b], torch.empty_like(out))
    assert [g.device.type for g in grads] == ["meta"] * len(grads)
    assert grads[0].shape == x.shape


# ------------------------------------------------------------------------------------------------ paths
def _layouts(monkeypatch, channels: int, kernel: int, groups: int) -> list[str]:
    """The column layouts ``_unfold`` is asked for by one forward and backward."""
    layouts = []
    real = conv_module._unfold
    monkeypatch.setattr(conv_module, "_unfold", lambda *a: layouts.append(a[-1]) or real(*a))
    x = torch.randn(2, channels, 6, 6, requires_grad=True)
    w = torch.randn(groups * 2, channels // groups, kernel, kernel, requires_grad=True)
    conv2d(x, w, None, 1, kernel // 2, 1, groups).sum().backward()
    return layouts


@pytest.mark.parametrize(
    ("channels", "kernel", "groups", "expected"),
    [
        (16, 3, 1, ["pixel", "pixel"]),  # 16 channels, one group: channels-last, from exactly 16 on
        (15, 3, 1, ["sample", "channel"]),  # fewer: channel-first
        (16, 3, 2, ["sample", "channel"]),  # groups: always channel-first
        (16, 1, 1, ["channel"]),  # 1x1 stride 1 unpadded: forward unfolds nothing, the weight gradient a view
    ],
)
def test_the_code_path_chosen_for_each_shape(monkeypatch, channels, kernel, groups, expected) -> None:
    assert _layouts(monkeypatch, channels, kernel, groups) == expected


def test_chunk_is_what_fits_the_budget_and_at_least_one_sample(budget) -> None:
    budget(100)
    assert conv_module._chunk(10, 30) == 3  # 100 // 30
    assert conv_module._chunk(2, 30) == 2  # never more than the batch
    assert conv_module._chunk(10, 1000) == 1  # one sample even when it alone exceeds the budget
    assert conv_module._chunk(200, 0) == 100  # an empty sample counts as one byte


def test_the_smallest_budget_is_one_byte(budget) -> None:
    budget(1)
    assert get_unfold_budget() == 1
    budget(2.9)  # a number of bytes: truncated to an int
    assert get_unfold_budget() == 2
    with pytest.raises(ValueError, match="got 0"):
        set_unfold_budget(0)


# ------------------------------------------------------------------------------------------------ formats
def test_format_is_contiguous_for_a_tensor_that_is_both() -> None:
    """One channel (or 1x1 pixels): contiguous and channels_last at once, which counts as contiguous."""
    both = torch.randn(2, 1, 5, 5)
    assert both.is_contiguous() and both.is_contiguous(memory_format=CL)
    assert conv_module._format(both) == torch.contiguous_format
    assert conv_module._format(torch.randn(2, 3, 5, 5).to(memory_format=CL)) == CL
    assert conv_module._format(torch.randn(2, 3, 5, 5)) == torch.contiguous_format
    assert conv_module._format(torch.randn(2, 3, 5, 5).transpose(2, 3)) == torch.contiguous_format  # neither


@pytest.mark.parametrize(("layout", "channels_last"), [("c-last", True), ("c-first", False)])
def test_fold_writes_into_a_buffer_of_the_columns_layout(layout: str, channels_last: bool) -> None:
    """Columns with C innermost are folded into a channels_last buffer (C-long runs), others into a contiguous one;
    the returned crop is a view of that buffer, so its strides tell."""
    cols = torch.randn(2, 2, 2, 2, 4, 4, dtype=torch.float64)  # (m, C, kh, kw, Ho, Wo), two channels
    if channels_last:
        cols = cols.permute(0, 4, 5, 2, 3, 1).contiguous().permute(0, 5, 3, 4, 1, 2)
    out = conv_module._fold(cols, (5, 5), (2, 2), (1, 1), (0, 0), (1, 1))
    assert out.is_contiguous(memory_format=CL) is channels_last
    assert out.is_contiguous() is not channels_last
    ref = F.fold(cols.reshape(2, 8, 16), (5, 5), (2, 2))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weight_gradients_accumulate_in_float32(dtype: torch.dtype) -> None:
    acc = conv_module._accumulator(torch.ones(2, dtype=dtype), (3, 4))
    assert acc.dtype == torch.float32 and acc.shape == (3, 4) and not acc.any()
    assert conv_module._accumulator(torch.ones(2, dtype=torch.float64), (3,)).dtype == torch.float64


# ------------------------------------------------------------------------------------------------ pure backward
def _pure(channels: int, kernel: int, groups: int, dtype=torch.float64):
    torch.manual_seed(0)
    x = torch.randn(3, channels, 6, 5, dtype=dtype)
    w = torch.randn(4, channels // groups, kernel, kernel, dtype=dtype)
    pad = kernel // 2
    grad_out = torch.randn(3, 4, 6, 5, dtype=dtype)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = torch.autograd.grad(F.conv2d(xr, wr, None, 1, pad, 1, groups), (xr, wr), grad_out)
    return x, w, grad_out, (pad, pad), ref


@pytest.mark.parametrize(("channels", "kernel", "groups"), [(4, 3, 1), (16, 3, 1), (4, 1, 1), (4, 3, 2)])
def test_conv2d_backward_alone_computes_only_what_is_asked(channels: int, kernel: int, groups: int) -> None:
    x, w, grad_out, pad, (ref_x, ref_w) = _pure(channels, kernel, groups)
    args = ((1, 1), pad, (1, 1), groups)
    grad_x, grad_w = conv2d_backward(x, w, grad_out, *args, need_input=True, need_weight=True)  # no input_shape
    torch.testing.assert_close(grad_x, ref_x, atol=1e-10, rtol=0)
    torch.testing.assert_close(grad_w, ref_w, atol=1e-10, rtol=0)
    grad_x, grad_w = conv2d_backward(x, w, grad_out, *args, need_input=True, need_weight=False)
    assert grad_w is None
    torch.testing.assert_close(grad_x, ref_x, atol=1e-10, rtol=0)
    grad_x, grad_w = conv2d_backward(None, w, grad_out, *args, need_input=True, need_weight=False,
                                     input_shape=x.shape)  # fmt: skip
    assert grad_w is None
    torch.testing.assert_close(grad_x, ref_x, atol=1e-10, rtol=0)
    grad_x, grad_w = conv2d_backward(x, w, grad_out, *args, need_input=False, need_weight=True)
    assert grad_x is None
    torch.testing.assert_close(grad_w, ref_w, atol=1e-10, rtol=0)
    assert conv2d_backward(x, w, grad_out, *args, need_input=False, need_weight=False) == (None, None)


@pytest.mark.parametrize(("channels", "kernel"), [(4, 3), (16, 3), (4, 1)])
def test_conv2d_backward_input_gradient_follows_the_inputs_format(channels: int, kernel: int) -> None:
    """With the input at hand its memory format wins over grad_out's; without it, grad_out's."""
    x, w, grad_out, pad, (ref_x, _) = _pure(channels, kernel, 1)
    args = ((1, 1), pad, (1, 1), 1)
    for x_format, g_format in ((CL, torch.contiguous_format), (torch.contiguous_format, CL)):
        xf, gf = x.contiguous(memory_format=x_format), grad_out.contiguous(memory_format=g_format)
        grad_x, _ = conv2d_backward(xf, w, gf, *args, need_input=True, need_weight=True)
        assert grad_x.is_contiguous(memory_format=x_format)
        torch.testing.assert_close(grad_x, ref_x, atol=1e-10, rtol=0)
        grad_x, _ = conv2d_backward(None, w, gf, *args, need_input=True, need_weight=False, input_shape=x.shape)
        assert grad_x.is_contiguous(memory_format=g_format)


@pytest.mark.parametrize("channels", [4, 16])
def test_conv2d_backward_returns_the_weights_dtype(channels: int) -> None:
    """The bfloat16 weight gradient is summed in float32 and handed back in bfloat16."""
    x, w, grad_out, pad, _ = _pure(channels, 3, 1, dtype=torch.bfloat16)
    _, grad_w = conv2d_backward(x, w, grad_out, (1, 1), pad, (1, 1), 1, need_input=False, need_weight=True)
    assert grad_w.dtype == torch.bfloat16 and grad_w.is_contiguous()


# ------------------------------------------------------------------------------------------------ module
def test_custom_conv2d_with_a_padding_mode_keeps_its_groups() -> None:
    torch.manual_seed(0)
    custom = CustomConv2d(4, 6, 3, padding=1, padding_mode="reflect", groups=2, stride=2, dilation=2)
    native = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect", groups=2, stride=2, dilation=2)
    native.load_state_dict(custom.state_dict())
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(custom(x), native(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ argument checks
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groups": 0}, "conv2d: groups must be a positive integer, got 0"),
        ({"padding": -1}, "conv2d: stride (1, 1) and dilation (1, 1) must be positive, padding (-1, -1) >= 0"),
        ({"dilation": (1, 0)}, "conv2d: stride (1, 1) and dilation (1, 0) must be positive, padding (0, 0) >= 0"),
    ],
)
def test_non_positive_groups_dilation_and_negative_padding_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), **kwargs)
    assert str(info.value) == message


def test_a_bias_of_another_dtype_is_named() -> None:
    with pytest.raises(RuntimeError) as info:
        conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.zeros(4, dtype=torch.float64))
    assert str(info.value) == (
        "conv2d: input (torch.float32, cpu) and bias (torch.float64, cpu) must have the same dtype and device"
    )


@pytest.mark.parametrize(
    ("hw", "kernel", "padding", "dilation", "padded", "extent"),
    [
        ((2, 8), (3, 3), (0, 0), (1, 1), (2, 8), (3, 3)),  # one row short; the width is fine
        ((8, 2), (3, 3), (0, 0), (1, 1), (8, 2), (3, 3)),  # one column short
        ((2, 8), (3, 3), (0, 2), (1, 1), (2, 12), (3, 3)),  # width padding does not help the height
        ((4, 8), (3, 3), (0, 0), (2, 1), (4, 8), (5, 3)),  # the height's dilation stretches the height only
        ((8, 4), (3, 3), (0, 0), (1, 2), (8, 4), (3, 5)),
    ],
)
def test_a_kernel_larger_than_the_padded_input_is_refused(hw, kernel, padding, dilation, padded, extent) -> None:
    with pytest.raises(RuntimeError) as info:
        conv2d(torch.randn(1, 2, *hw), torch.randn(3, 2, *kernel), padding=padding, dilation=dilation)
    assert str(info.value) == (
        f"conv2d: calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel size: "
        f"({extent[0]} x {extent[1]}) with dilation. Kernel size can't be greater than actual input size"
    )


@pytest.mark.parametrize(("hw", "dilation"), [((3, 3), (1, 1)), ((5, 3), (2, 1)), ((3, 5), (1, 2))])
def test_a_kernel_exactly_the_inputs_size_gives_one_pixel(hw, dilation) -> None:
    torch.manual_seed(0)
    x, w = torch.randn(2, 2, *hw, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    out = conv2d(x, w, dilation=dilation)
    assert out.shape == (2, 3, 1, 1)
    torch.testing.assert_close(out, F.conv2d(x, w, dilation=dilation), atol=1e-12, rtol=0)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # F.conv2d's own warning
@pytest.mark.parametrize(
    ("kernel", "dilation"), [((6, 2), (1, 1)), ((2, 6), (1, 1)), ((3, 2), (1, 3)), ((4, 3), (3, 1))]
)
def test_same_padding_with_asymmetric_totals_matches_torch(kernel, dilation) -> None:
    """An odd total padding puts the extra pixel bottom/right: totals 5 (kernel 6) and 3 (dilation 3) split 2 + 3
    and 1 + 2."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 2, 9, 10, dtype=torch.float64), torch.randn(3, 2, *kernel, dtype=torch.float64)
    ours, ref = conv2d(x, w, padding="same", dilation=dilation), F.conv2d(x, w, padding="same", dilation=dilation)
    assert ours.shape == ref.shape == (2, 3, 9, 10)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


def test_padding_strings_report_the_bad_argument_itself() -> None:
    with pytest.raises(RuntimeError) as info:  # 'same' must not index into a weight that is not 4-D
        conv2d(torch.randn(8, 8), torch.randn(4, 3, 3), padding="same")
    assert str(info.value) == "conv2d: expected 3-D (unbatched) or 4-D (batched) input, got input of size [8, 8]"
    with pytest.raises(ValueError) as info:
        conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding="same", stride=2)
    assert str(info.value) == "conv2d: padding='same' is not supported for strided convolutions"


def test_fold_allocates_on_the_columns_device() -> None:
    cols = torch.empty(2, 3, 2, 2, 4, 4, device="meta")
    assert conv_module._fold(cols, (5, 5), (2, 2), (1, 1), (0, 0), (1, 1)).device.type == "meta"
