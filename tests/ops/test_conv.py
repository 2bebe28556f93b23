"""The unfold/fold convolution against ``F.conv2d``: outputs and all three gradients."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.models import SimpleNet
from visionlab.ops import CustomConv2d, conv2d, get_unfold_budget, set_unfold_budget
from visionlab.ops import conv as conv_module

from ..statistical import Statistic


@pytest.fixture
def budget():
    """Set the unfold budget for one test (restored afterwards)."""
    old = get_unfold_budget()
    yield set_unfold_budget
    set_unfold_budget(old)


@pytest.fixture
def tiny_budget(budget):
    """Force chunking: room for one or two samples' columns."""
    budget(3000)


def _compare(n, c, o, hw, kernel, stride, padding, dilation, groups, bias, dtype=torch.float64, atol=1e-10):
    x = torch.randn(n, c, *hw, dtype=dtype, requires_grad=True)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = torch.randn(o, c // groups, kh, kw, dtype=dtype, requires_grad=True)
    b = torch.randn(o, dtype=dtype, requires_grad=True) if bias else None
    ours = conv2d(x, w, b, stride, padding, dilation, groups)
    ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=atol, rtol=0)
    grad = torch.randn_like(ref)
    inputs = [x, w] + ([b] if bias else [])
    for g_ours, g_ref in zip(
        torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(ref, inputs, grad), strict=True
    ):
        torch.testing.assert_close(g_ours, g_ref, atol=atol, rtol=0)


@pytest.mark.parametrize("channels", [4, 16])  # 16 channels and groups=1: the channels-last path
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize(
    ("groups", "kernel", "bias"), [(1, 3, True), (2, (3, 2), False), (4, 1, True), (1, (1, 5), False)]
)
def test_matches_conv2d_grid(channels, stride, padding, dilation, groups, kernel, bias, tiny_budget) -> None:
    torch.manual_seed(0)
    _compare(3, channels, 8, (7, 6), kernel, stride, padding, dilation, groups, bias)


def test_matches_conv2d_random_configurations() -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(25):
        groups = rng.choice([1, 1, 2, 3])
        c, o = groups * rng.choice([1, 2, 3, 17]), groups * rng.randint(1, 3)
        kernel = (rng.randint(1, 4), rng.randint(1, 4))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        hw = (rng.randint(8, 12), rng.randint(8, 12))
        _compare(rng.randint(1, 6), c, o, hw, kernel, stride, padding, dilation, groups, rng.random() < 0.5)


def test_original_check_and_gradcheck() -> None:
    """The course's check: batch 2, 3->64, kernel 7, stride 2, padding 3, 12x12; error < 1e-5; gradcheck."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert (conv2d(x, w, b, 2, 3) - F.conv2d(x, w, b, 2, 3)).abs().max() < 1e-5
    # 10k inputs: fast mode checks random projections of the Jacobian instead of every column.
    assert torch.autograd.gradcheck(lambda *t: conv2d(*t, 2, 3), (x, w, b), eps=1e-4, atol=1e-5, fast_mode=True)
    small = (torch.randn(3, 4, 6, 5, dtype=torch.float64, requires_grad=True),
             torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True),
             torch.randn(6, dtype=torch.float64, requires_grad=True))  # fmt: skip
    assert torch.autograd.gradcheck(lambda x, w, b: conv2d(x, w, b, (2, 1), 1, (1, 2), 2), small, eps=1e-4, atol=1e-5)
    pointwise = (torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True),
                 torch.randn(5, 4, 1, 1, dtype=torch.float64, requires_grad=True))  # fmt: skip
    assert torch.autograd.gradcheck(conv2d, pointwise, eps=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", [3, 1])
@pytest.mark.parametrize(("channels", "groups"), [(6, 1), (6, 3), (18, 1)])
def test_batches_that_do_not_divide_the_chunk(monkeypatch, budget, kernel: int, channels: int, groups: int) -> None:
    """Batch 7 with room for 3 samples' columns: chunks 3, 3, 1 in forward (none for 1x1 kernels, which need no
    unfold) and again in backward, whose weight gradient unfolds the input once more."""
    torch.manual_seed(0)
    chunks = []
    real = conv_module._unfold
    monkeypatch.setattr(conv_module, "_unfold", lambda t, *a, **k: chunks.append(t.shape[0]) or real(t, *a, **k))
    budget(3 * channels * kernel * kernel * 10 * 10 * 8)  # 3 samples of C*kh*kw*L float64 columns
    _compare(7, channels, 6, (10, 10), kernel, 1, kernel // 2, 1, groups, True)
    assert chunks == ([3, 3, 1] if kernel > 1 else []) + [3, 3, 1]


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 2), (2, 1), (0, 2), (2, 1)), ((7, 7), (2, 2), (3, 3), (1, 1)),
     ((1, 1), (1, 1), (0, 0), (1, 1)), ((1, 1), (2, 2), (1, 0), (1, 1))],
)  # fmt: skip
def test_unfold_and_fold_equal_torch_and_are_adjoint(kernel, stride, padding, dilation) -> None:
    """The strided-view unfold/fold are exactly ``F.unfold``/``F.fold``, in both column layouts."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 11, 9, dtype=torch.float64)
    ref = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    unfold = conv_module._unfold
    torch.testing.assert_close(unfold(x, kernel, stride, padding, dilation, "sample"), ref, atol=0, rtol=0)
    k = ref.shape[1]
    channel = unfold(x, kernel, stride, padding, dilation, "channel")
    torch.testing.assert_close(channel, ref.transpose(0, 1).reshape(k, -1), atol=0, rtol=0)
    pixel = unfold(x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, "pixel")
    by_tap = ref.view(3, 4, kernel[0] * kernel[1], -1).permute(0, 3, 2, 1)  # rows ordered (kh, kw, C)
    torch.testing.assert_close(pixel, by_tap.reshape(-1, k), atol=0, rtol=0)
    cols = torch.randn_like(ref)
    ho = (11 + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ref_fold = F.fold(cols, (11, 9), kernel, dilation=dilation, padding=padding, stride=stride)
    six = cols.view(3, 4, *kernel, ho, -1)
    for layout in (six, six.permute(0, 4, 5, 2, 3, 1).contiguous().permute(0, 5, 3, 4, 1, 2)):  # C-first, C-last
        folded = conv_module._fold(layout, (11, 9), kernel, stride, padding, dilation)
        torch.testing.assert_close(folded, ref_fold, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize(("kernel", "groups"), [(3, 1), (3, 2), (1, 2)])
def test_low_precision_within_tolerance(dtype: torch.dtype, tol: float, kernel: int, groups: int) -> None:
    torch.manual_seed(0)
    x64 = torch.randn(4, 16, 11, 11, dtype=torch.float64)
    w64 = torch.randn(8, 16 // groups, kernel, kernel, dtype=torch.float64) / 5
    b64 = torch.randn(8, dtype=torch.float64)
    x, w, b = (t.to(dtype).requires_grad_() for t in (x64, w64, b64))
    out = conv2d(x, w, b, 1, kernel // 2, 1, groups)
    assert out.dtype == dtype
    # Reference: float64 on the inputs as rounded to `dtype`, so only the op's own rounding is measured.
    xr, wr, br = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = F.conv2d(xr, wr, br, 1, kernel // 2, 1, groups)
    grad = torch.randn_like(ref)
    assert (out.double() - ref).abs().max() / ref.abs().max() < tol
    ours = torch.autograd.grad(out, (x, w, b), grad.to(dtype))
    for g_ours, g_ref in zip(ours, torch.autograd.grad(ref, (xr, wr, br), grad), strict=True):
        assert g_ours.dtype == dtype
        assert (g_ours.double() - g_ref).abs().max() / g_ref.abs().max() < tol


@pytest.mark.parametrize("kernel", [3, 1])
@pytest.mark.parametrize("channels", [4, 16])
def test_channels_last_input_gives_channels_last_output(kernel: int, channels: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, channels, 9, 9, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, channels, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = conv2d(x, w, None, 1, kernel // 2)
    ref = F.conv2d(x, w, None, 1, kernel // 2)
    assert out.is_contiguous(memory_format=torch.channels_last) and ref.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    grad = torch.randn_like(ref).contiguous(memory_format=torch.channels_last)
    for g_ours, g_ref in zip(
        torch.autograd.grad(out, (x, w), grad), torch.autograd.grad(ref, (x, w), grad), strict=True
    ):
        torch.testing.assert_close(g_ours, g_ref, atol=1e-12, rtol=0)
    contiguous = conv2d(x.detach().contiguous(), w, None, 1, kernel // 2)
    assert contiguous.is_contiguous()
    contiguous.backward(grad)
    assert w.grad.is_contiguous()


@pytest.mark.parametrize("kernel", [3, 1])
@pytest.mark.parametrize("channels", [3, 16])
def test_only_needed_gradients_are_computed(monkeypatch, kernel: int, channels: int) -> None:
    calls = []
    for name in ("_fold", "_unfold"):
        real = getattr(conv_module, name)
        monkeypatch.setattr(
            conv_module, name, lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k)
        )
    torch.manual_seed(0)
    x = torch.randn(2, channels, 8, 8)  # the input does not require grad: no input gradient, no fold
    w = torch.randn(4, channels, kernel, kernel, requires_grad=True)
    out = conv2d(x, w, None, 1, kernel // 2)
    calls.clear()
    out.sum().backward()
    assert "_fold" not in calls and "_unfold" in calls and w.grad is not None and x.grad is None
    x.requires_grad_()
    w2 = torch.randn(4, channels, kernel, kernel)  # weight frozen: input gradient only, no unfold in backward
    out = conv2d(x, w2, None, 1, kernel // 2)
    assert out.grad_fn.saved_tensors[0] is None  # the input is not even kept
    calls.clear()
    out.sum().backward()
    assert "_unfold" not in calls and x.grad is not None and w2.grad is None
    assert calls == (["_fold"] if kernel > 1 else [])  # a 1x1 kernel's fold is the identity


def test_backward_keeps_only_input_and_weight() -> None:
    """No unfolded buffer survives between forward and backward: only the input and the weight are saved."""
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    saved = conv2d(x, w, b, 1, 1).grad_fn.saved_tensors
    assert [t.shape for t in saved] == [x.shape, w.shape]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # F.conv2d's own warning
def test_unbatched_and_padding_strings() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 3, 4, 3, dtype=torch.float64)
    x = torch.randn(3, 10, 9, dtype=torch.float64)
    torch.testing.assert_close(conv2d(x, w), F.conv2d(x, w), atol=1e-12, rtol=0)
    for mode in ("same", "valid"):
        torch.testing.assert_close(conv2d(x, w, padding=mode), F.conv2d(x, w, padding=mode), atol=1e-12, rtol=0)
        torch.testing.assert_close(
            conv2d(x, w, padding=mode, dilation=2), F.conv2d(x, w, padding=mode, dilation=2), atol=1e-12, rtol=0
        )


def test_custom_conv2d_is_a_drop_in_for_nn_conv2d() -> None:
    torch.manual_seed(0)
    native = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    custom = CustomConv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    assert [n for n, _ in native.named_parameters()] == [n for n, _ in custom.named_parameters()]
    custom.load_state_dict(native.state_dict())
    x = torch.randn(3, 4, 10, 10)
    # float32, and nn.Conv2d runs oneDNN while ours runs an MKL GEMM: which kernels (AVX-512 or AVX2) they pick,
    # and so their summation order, depends on the CPU, so they agree to ~1e-6, not bit for bit.
    torch.testing.assert_close(custom(x), native(x), atol=1e-5, rtol=1e-5)
    native.load_state_dict(CustomConv2d(4, 6, (3, 2), stride=2, padding=1, groups=2).state_dict())  # and back
    for kwargs in ({"padding": 1, "padding_mode": "reflect"}, {"padding": "same"}, {"padding": "same", "bias": False},
                   {"padding": "same", "padding_mode": "circular", "dilation": 2}):  # fmt: skip
        torch.manual_seed(1)
        custom2 = CustomConv2d(4, 6, 3, **kwargs)
        native2 = nn.Conv2d(4, 6, 3, **kwargs)
        native2.load_state_dict(custom2.state_dict())
        torch.testing.assert_close(custom2(x), native2(x), atol=1e-5, rtol=1e-5)
    # same initialisation: the same RNG draws as nn.Conv2d
    torch.manual_seed(3)
    a = nn.Conv2d(8, 16, 3)
    torch.manual_seed(3)
    b = CustomConv2d(8, 16, 3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "message"),
    [
        ((2, 5, 8, 8), (4, 3, 3, 3), {}, r"expected input\[2, 5, 8, 8\] to have 3 channels, but got 5"),
        ((2, 4, 8, 8), (6, 2, 3, 3), {"groups": 3}, "expected input.* to have 6 channels, but got 4"),
        ((2, 4, 8, 8), (5, 2, 3, 3), {"groups": 2}, r"out_channels \(5\) must be divisible by groups \(2\)"),
        ((2, 3, 4, 4), (4, 3, 7, 7), {"padding": 1}, r"input size per channel: \(6 x 6\). Kernel size: \(7 x 7\)"),
        ((3, 4, 4), (4, 3, 7, 7), {}, "Kernel size can't be greater"),
        ((8, 8), (4, 3, 3, 3), {}, r"expected 3-D .* or 4-D .* input, got input of size \[8, 8\]"),
        ((1, 2, 3, 8, 8), (4, 3, 3, 3), {}, "expected 3-D .* or 4-D .* input"),
        ((2, 3, 8, 8), (4, 3, 3), {}, r"weight must be 4-D .* got size \[4, 3, 3\]"),
    ],
)  # fmt: skip
def test_invalid_arguments_raise_clear_errors(x_shape, w_shape, kwargs, message) -> None:
    with pytest.raises(RuntimeError, match=message):
        conv2d(torch.randn(*x_shape), torch.randn(*w_shape), **kwargs)


def test_invalid_values_raise_clear_errors() -> None:
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"input \(torch.float32, cpu\) and weight \(torch.float64, cpu\)"):
        conv2d(x, w.double())
    with pytest.raises(RuntimeError, match=r"bias of size \[3\] does not match 4 output channels"):
        conv2d(x, w, torch.randn(3))
    with pytest.raises(ValueError, match="stride"):
        conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        conv2d(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="unfold budget must be a positive"):
        set_unfold_budget(0)
    out = conv2d(x.requires_grad_(), w)
    (grad_x,) = torch.autograd.grad(out, x, torch.ones_like(out, requires_grad=True), create_graph=True)
    with pytest.raises(RuntimeError, match="twice"):  # the hand-written backward is not differentiable
        grad_x.sum().backward()


@pytest.mark.statistical(seed=0)
def test_simplenet_same_loss_over_20_sgd_steps_with_either_conv(stat_seed: int, stat: Statistic) -> None:
    torch.manual_seed(stat_seed)
    native = SimpleNet(num_classes=10, in_channels=3).double()
    custom = SimpleNet(num_classes=10, in_channels=3, conv_layer=CustomConv2d).double()
    assert sum(isinstance(m, CustomConv2d) for m in custom.modules()) == 7
    custom.load_state_dict(native.state_dict())
    initial = [p.detach().clone() for p in native.parameters()]
    data = [(torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))) for _ in range(20)]
    losses = {}
    for name, model in (("native", native), ("custom", custom)):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        for x, y in data:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    # It trained: every parameter moved by far more than rounding, so the comparison below covers the gradients of
    # every layer. (The old `losses[-1] != losses[0]` held even at lr 0: each step sees a different batch.)
    moved = min((p.detach() - p0).abs().max().item() for p, p0 in zip(native.parameters(), initial, strict=True))
    stat.check("least max move of a parameter tensor", moved, ">", 1e-4)
    custom_loss, native_loss = torch.tensor(losses["custom"]), torch.tensor(losses["native"])
    stat.check("max relative loss gap", ((custom_loss - native_loss).abs() / native_loss.abs()).max(), "<=", 1e-10)
    pairs = zip(custom.parameters(), native.parameters(), strict=True)
    gap = max(((c - n).abs() / (1e-12 + 1e-9 * n.abs())).max().item() for c, n in pairs)
    stat.check("max parameter gap in units of (1e-12 + 1e-9 |p|)", gap, "<=", 1)
