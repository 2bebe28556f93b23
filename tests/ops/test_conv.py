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


@pytest.fixture
def tiny_budget():
    """Force chunking: a budget of a few samples' columns."""
    old = get_unfold_budget()
    set_unfold_budget(3000)
    yield
    set_unfold_budget(old)


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


@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize(
    ("groups", "kernel", "bias"), [(1, 3, True), (2, (3, 2), False), (4, 1, True), (1, (1, 5), False)]
)
def test_matches_conv2d_grid(stride, padding, dilation, groups, kernel, bias, tiny_budget) -> None:
    torch.manual_seed(0)
    _compare(3, 4, 8, (7, 6), kernel, stride, padding, dilation, groups, bias)


def test_matches_conv2d_random_configurations() -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(25):
        groups = rng.choice([1, 1, 2, 3])
        c, o = groups * rng.randint(1, 3), groups * rng.randint(1, 3)
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
             torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True))  # fmt: skip
    assert torch.autograd.gradcheck(lambda x, w: conv2d(x, w, None, (2, 1), 1, (1, 2), 2), small)


@pytest.mark.parametrize(("groups", "spy"), [(1, "_unfold_nhwc"), (3, "F.unfold")])
def test_batches_that_do_not_divide_the_chunk(monkeypatch: pytest.MonkeyPatch, groups: int, spy: str) -> None:
    """Batch 7 with room for 3 samples' columns: chunks 3, 3, 1 in forward and again in backward."""
    torch.manual_seed(0)
    per_sample = 3 * 9 * 10 * 10 * 8  # C*kh*kw*L*bytes (stride 1, padding 1, float64)
    chunks = []
    owner, name = (conv_module.F, "unfold") if spy == "F.unfold" else (conv_module, spy)
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda t, *a, **k: chunks.append(t.shape[0]) or real(t, *a, **k))
    old = get_unfold_budget()
    try:
        set_unfold_budget(3 * per_sample)
        _compare(7, 3, 6, (10, 10), 3, 1, 1, 1, groups, True)
    finally:
        set_unfold_budget(old)
    assert chunks == [3, 3, 1, 3, 3, 1]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
def test_low_precision_within_tolerance(dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(0)
    x64 = torch.randn(4, 6, 11, 11, dtype=torch.float64)
    w64 = torch.randn(8, 3, 3, 3, dtype=torch.float64) / 5
    b64 = torch.randn(8, dtype=torch.float64)
    x, w, b = (t.to(dtype).requires_grad_() for t in (x64, w64, b64))
    out = conv2d(x, w, b, 1, 1, 1, 2)
    assert out.dtype == dtype
    ref = F.conv2d(x64, w64, b64, 1, 1, 1, 2)
    scale = ref.abs().max()
    assert ((out.double() - ref).abs().max() / scale) < tol
    out.sum().backward()
    xr, wr = x64.clone().requires_grad_(), w64.clone().requires_grad_()
    F.conv2d(xr, wr, b64, 1, 1, 1, 2).sum().backward()
    assert ((x.grad.double() - xr.grad).abs().max() / xr.grad.abs().max()) < tol
    assert ((w.grad.double() - wr.grad).abs().max() / wr.grad.abs().max()) < tol


def test_channels_last_input_and_output() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    out = conv2d(x, w, None, 1, 1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.conv2d(x, w, None, 1, 1), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    xr = x.detach().clone().requires_grad_()
    F.conv2d(xr, w.detach(), None, 1, 1).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, atol=1e-5, rtol=1e-5)


def test_only_needed_gradients_are_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_fold = conv_module._fold_nhwc
    monkeypatch.setattr(conv_module, "_fold_nhwc", lambda *a, **k: calls.append("fold") or real_fold(*a, **k))
    x = torch.randn(2, 3, 8, 8)  # input does not require grad: no input gradient, no fold
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    conv2d(x, w, None, 1, 1).sum().backward()
    assert calls == [] and w.grad is not None and x.grad is None
    x.requires_grad_()
    w2 = torch.randn(4, 3, 3, 3)  # weight frozen: input gradient only
    conv2d(x, w2, None, 1, 1).sum().backward()
    assert calls == ["fold"] and x.grad is not None and w2.grad is None


def test_unbatched_and_padding_strings() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 3, 4, 3)
    x = torch.randn(3, 10, 9)
    torch.testing.assert_close(conv2d(x, w), F.conv2d(x, w), atol=1e-5, rtol=1e-5)
    for mode in ("same", "valid"):
        torch.testing.assert_close(conv2d(x, w, padding=mode), F.conv2d(x, w, padding=mode), atol=1e-5, rtol=1e-5)


def test_custom_conv2d_is_a_drop_in_for_nn_conv2d() -> None:
    torch.manual_seed(0)
    native = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    custom = CustomConv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    assert [n for n, _ in native.named_parameters()] == [n for n, _ in custom.named_parameters()]
    custom.load_state_dict(native.state_dict())
    x = torch.randn(3, 4, 10, 10)
    torch.testing.assert_close(custom(x), native(x), atol=1e-5, rtol=1e-5)
    torch.manual_seed(1)
    custom2 = CustomConv2d(4, 6, 3, padding=1, padding_mode="reflect")
    native2 = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect")
    native2.load_state_dict(custom2.state_dict())
    torch.testing.assert_close(custom2(x), native2(x), atol=1e-5, rtol=1e-5)
    # same initialisation distribution: same RNG draws as nn.Conv2d
    torch.manual_seed(3)
    a = nn.Conv2d(8, 16, 3)
    torch.manual_seed(3)
    b = CustomConv2d(8, 16, 3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "message"),
    [
        ((2, 5, 8, 8), (4, 3, 3, 3), {}, "expected input.* to have 3 channels, but got 5"),
        ((2, 4, 8, 8), (6, 2, 3, 3), {"groups": 3}, "expected input.* to have 6 channels, but got 4"),
        ((2, 4, 8, 8), (5, 2, 3, 3), {"groups": 2}, r"out_channels \(5\) must be divisible by groups \(2\)"),
        ((2, 3, 4, 4), (4, 3, 7, 7), {"padding": 1}, "Kernel size can't be greater than actual input size"),
        ((3, 4, 4), (4, 3, 7, 7), {}, "Kernel size can't be greater"),
        ((8, 8), (4, 3, 3, 3), {}, "expected 3-D .* or 4-D .* input"),
        ((1, 2, 3, 8, 8), (4, 3, 3, 3), {}, "expected 3-D .* or 4-D .* input"),
    ],
)
def test_invalid_arguments_raise_clear_errors(x_shape, w_shape, kwargs, message) -> None:
    with pytest.raises(RuntimeError, match=message):
        conv2d(torch.randn(*x_shape), torch.randn(*w_shape), **kwargs)


def test_simplenet_same_loss_over_20_sgd_steps_with_either_conv() -> None:
    torch.manual_seed(0)
    native = SimpleNet(num_classes=10, in_channels=3).double()
    custom = SimpleNet(num_classes=10, in_channels=3, conv_layer=CustomConv2d).double()
    custom.load_state_dict(native.state_dict())
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
    assert losses["native"][-1] != losses["native"][0]  # it trained
    torch.testing.assert_close(torch.tensor(losses["custom"]), torch.tensor(losses["native"]), rtol=1e-10, atol=0)
