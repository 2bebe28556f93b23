"""2D convolution as unfold + matrix multiply, with a hand-written backward (matrix multiply + fold).

Four pieces, in the order data flows through them:

* :func:`conv2d_forward` / :func:`conv2d_backward` — pure tensor functions, no autograd;
* :class:`Conv2dFunction` — a thin ``torch.autograd.Function`` that saves only the input and the weight;
* :func:`conv2d` — the functional form, with ``F.conv2d``'s signature;
* :class:`CustomConv2d` — a drop-in ``nn.Conv2d`` (same constructor, parameters, initialisation, state dict).

Memory. Unfolding an ``(N, C, H, W)`` input for a ``kh x kw`` kernel makes an ``(N, C*kh*kw, L)`` buffer
(``L = Hout * Wout``), ``kh*kw`` times the input for stride 1: 1.2 GB for SimpleNet's 3x3 layer at batch 256 on
MiniPlaces. visionlab never holds it whole: the batch is processed in chunks whose unfolded buffer fits a byte
budget (:func:`set_unfold_budget`, 64 MiB by default), and the buffer is *not* kept between forward and
backward. Backward keeps the input (which autograd holds anyway for the previous layer) and unfolds each chunk
again to form the weight gradient. The trade: one extra unfold per chunk in backward (a memory-bound copy,
cheap next to the matrix multiplies) for a peak memory that no longer grows with ``kh*kw``. 1x1 convolutions
with stride 1 and no padding need no unfold at all and are plain matrix multiplies over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = ["Conv2dFunction", "CustomConv2d", "clear_workspace", "conv2d", "conv2d_backward", "conv2d_forward",
           "get_unfold_budget", "set_unfold_budget"]  # fmt: skip

_UNFOLD_BUDGET = 64 * 2**20  # bytes of unfolded input per chunk

Pair = tuple[int, int]


def set_unfold_budget(nbytes: int) -> None:
    """Set the most bytes an unfolded chunk may take (default 64 MiB); at least one sample is always unfolded."""
    global _UNFOLD_BUDGET
    if nbytes <= 0:
        raise ValueError(f"unfold budget must be positive, got {nbytes}")
    _UNFOLD_BUDGET = int(nbytes)


def get_unfold_budget() -> int:
    return _UNFOLD_BUDGET


# ------------------------------------------------------------------------------------------------ helpers
def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check(x: torch.Tensor, weight: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> None:
    """Raise errors as specific as ``F.conv2d``'s for shapes it would reject."""
    if weight.dim() != 4:
        raise RuntimeError(
            f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kh, kw), got {weight.dim()}-D"
        )
    if x.dim() != 4:
        raise RuntimeError(
            f"conv2d: expected 3-D (unbatched) or 4-D (batched) input, got input of size {list(x.shape)}"
        )
    if groups <= 0:
        raise ValueError(f"conv2d: groups must be a positive integer, got {groups}")
    if weight.shape[0] % groups:
        raise RuntimeError(f"conv2d: out_channels ({weight.shape[0]}) must be divisible by groups ({groups})")
    if x.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(
            f"conv2d: given groups={groups}, weight of size {list(weight.shape)}, expected input{list(x.shape)} "
            f"to have {weight.shape[1] * groups} channels, but got {x.shape[1]} channels instead"
        )
    if min(stride) <= 0 or min(dilation) <= 0 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be positive, padding {padding} >= 0")
    kh, kw = weight.shape[2:]
    hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if hp < dilation[0] * (kh - 1) + 1 or wp < dilation[1] * (kw - 1) + 1:
        raise RuntimeError(
            f"conv2d: calculated padded input size per channel: ({hp} x {wp}). Kernel size: "
            f"({dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1}) with dilation. "
            "Kernel size can't be greater than actual input size"
        )


def _is_pointwise(weight: torch.Tensor, stride: Pair, padding: Pair) -> bool:
    return weight.shape[2:] == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _chunk(n: int, per_sample_bytes: int) -> int:
    return max(1, min(n, _UNFOLD_BUDGET // max(1, per_sample_bytes)))


def _unfold(x: torch.Tensor, weight: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair, groups: int):
    """``x`` chunk -> ``(n, groups, C/groups * kh * kw, L)`` columns (a view for 1x1 stride-1 kernels)."""
    n = x.shape[0]
    if _is_pointwise(weight, stride, padding):
        return x.reshape(n, groups, x.shape[1] // groups, -1)
    cols = F.unfold(x, weight.shape[2:], dilation=dilation, padding=padding, stride=stride)
    return cols.view(n, groups, cols.shape[1] // groups, cols.shape[2])


# ------------------------------------------------------------------------------------------------ NHWC path
# For groups == 1 the columns are built channels-last: row r = one output pixel, holding its kh x kw x C input
# window contiguously. Each of the kh*kw kernel taps is then one strided copy of C-long runs (fast), the
# product is a single large GEMM over all pixels of the chunk, and its result *is* the NHWC output, so no
# transpose is needed. The column buffer lives in a reusable workspace bounded by the budget: re-faulting a
# fresh buffer's pages on every call costs more than the copy itself.
_WORKSPACE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _workspace(numel: int, like: torch.Tensor) -> torch.Tensor:
    key = (like.device, like.dtype)
    buf = _WORKSPACE.get(key)
    if buf is None or buf.numel() < numel:
        buf = _WORKSPACE[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buf[:numel]


def clear_workspace() -> None:
    """Free the cached column workspaces (at most one budget's worth per device and dtype)."""
    _WORKSPACE.clear()


def _taps(kh: int, kw: int, ho: int, wo: int, stride: Pair, dilation: Pair):
    """For each kernel tap ``(i, j)``: the slices of the padded input it reads for every output pixel."""
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            rows = slice(r0, r0 + (ho - 1) * stride[0] + 1, stride[0])
            cols = slice(c0, c0 + (wo - 1) * stride[1] + 1, stride[1])
            yield i, j, rows, cols


def _unfold_nhwc(xp: torch.Tensor, kh: int, kw: int, ho: int, wo: int, stride: Pair, dilation: Pair) -> torch.Tensor:
    """Padded NHWC chunk ``(m, Hp, Wp, C)`` -> columns ``(m * Ho * Wo, kh * kw * C)`` in the workspace."""
    m, _, _, c = xp.shape
    cols = _workspace(m * ho * wo * kh * kw * c, xp).view(m, ho, wo, kh, kw, c)
    for i, j, rows, cs in _taps(kh, kw, ho, wo, stride, dilation):
        cols[:, :, :, i, j, :].copy_(xp[:, rows, cs, :])
    return cols.view(m * ho * wo, kh * kw * c)


def _fold_nhwc(cols: torch.Tensor, m: int, hp: int, wp: int, c: int, kh: int, kw: int, ho: int, wo: int,
               stride: Pair, dilation: Pair) -> torch.Tensor:  # fmt: skip
    """Adjoint of :func:`_unfold_nhwc`: sum the column gradients back onto a padded NHWC ``(m, Hp, Wp, C)``."""
    out = cols.new_zeros(m, hp, wp, c)
    cols = cols.view(m, ho, wo, kh, kw, c)
    for i, j, rows, cs in _taps(kh, kw, ho, wo, stride, dilation):
        out[:, rows, cs, :] += cols[:, :, :, i, j, :]
    return out


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> a contiguous ``(N, H, W, C)`` (free when ``x`` is already channels_last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _forward_nhwc(x, weight, bias, stride, padding, dilation, ho, wo) -> torch.Tensor:
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    xl = _nhwc(x)
    w_mat = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)  # rows ordered (kh, kw, C) like the columns
    # A base tensor (not a view: in-place ReLU on it must stay legal), channels_last in memory.
    out = torch.empty(n, o, ho, wo, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out_nhwc = out.permute(0, 2, 3, 1)
    pointwise = _is_pointwise(weight, stride, padding)
    step = n if pointwise else _chunk(n, ho * wo * kh * kw * c * x.element_size())
    for start in range(0, n, step):
        chunk = xl[start : start + step]
        m = chunk.shape[0]
        if pointwise:
            cols = chunk.view(m * h * w, c)
        else:
            xp = F.pad(chunk, (0, 0, padding[1], padding[1], padding[0], padding[0]))
            cols = _unfold_nhwc(xp, kh, kw, ho, wo, stride, dilation)
        rows = out_nhwc[start : start + m].view(m * ho * wo, o)
        if bias is None:
            torch.mm(cols, w_mat.t(), out=rows)
        else:
            torch.addmm(bias, cols, w_mat.t(), out=rows)
    return out


def _backward_nhwc(x, weight, grad_out, stride, padding, dilation, need_input, need_weight):
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = grad_out.shape[2:]
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    xl = _nhwc(x) if need_weight else None
    go = _nhwc(grad_out)
    w_mat = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)
    acc_dtype = torch.float32 if x.dtype == torch.bfloat16 else x.dtype
    grad_w = torch.zeros(o, kh * kw * c, dtype=acc_dtype, device=x.device) if need_weight else None
    grad_x = torch.empty(n, h, w, c, dtype=x.dtype, device=x.device) if need_input else None
    pointwise = _is_pointwise(weight, stride, padding)
    step = n if pointwise else _chunk(n, ho * wo * kh * kw * c * x.element_size())
    for start in range(0, n, step):
        g = go[start : start + step]
        m = g.shape[0]
        g_rows = g.view(m * ho * wo, o)
        if grad_w is not None:
            if pointwise:
                cols = xl[start : start + m].view(m * h * w, c)
            else:
                xp = F.pad(xl[start : start + m], (0, 0, padding[1], padding[1], padding[0], padding[0]))
                cols = _unfold_nhwc(xp, kh, kw, ho, wo, stride, dilation)  # recomputed, not saved
            grad_w.add_(torch.mm(g_rows.t(), cols))
        if grad_x is not None:
            if pointwise:
                torch.mm(g_rows, w_mat, out=grad_x[start : start + m].view(m * h * w, c))
            else:
                cols_grad = _workspace(m * ho * wo * kh * kw * c, x).view(m * ho * wo, kh * kw * c)
                torch.mm(g_rows, w_mat, out=cols_grad)
                folded = _fold_nhwc(cols_grad, m, hp, wp, c, kh, kw, ho, wo, stride, dilation)
                grad_x[start : start + m] = folded[:, padding[0] : padding[0] + h, padding[1] : padding[1] + w]
    if grad_w is not None:
        grad_w = grad_w.to(weight.dtype).view(o, kh, kw, c).permute(0, 3, 1, 2).contiguous()
    return (grad_x.permute(0, 3, 1, 2) if grad_x is not None else None), grad_w


# ------------------------------------------------------------------------------------------------ pure ops
def conv2d_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Pair, padding: Pair, dilation: Pair,
    groups: int,
) -> torch.Tensor:  # fmt: skip
    """``out[n, o] = sum_k W[o, k] * cols[n, k] (+ b[o])`` chunk by chunk; returns ``(N, O, Hout, Wout)``."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = _out_size(h, kh, stride[0], padding[0], dilation[0]), _out_size(w, kw, stride[1], padding[1], dilation[1])
    if groups == 1:
        return _forward_nhwc(x, weight, bias, stride, padding, dilation, ho, wo)
    x = x.contiguous()
    w_mat = weight.reshape(groups, o // groups, -1)  # (g, O/g, C/g*kh*kw)
    # Allocated in its final shape so the result is not a view (in-place ReLU on it must stay legal).
    out = torch.empty(n, o, ho, wo, dtype=x.dtype, device=x.device)
    step = _chunk(n, c * kh * kw * ho * wo * x.element_size())
    for start in range(0, n, step):
        cols = _unfold(x[start : start + step], weight, stride, padding, dilation, groups)
        res = out[start : start + step].view(cols.shape[0], groups, o // groups, ho * wo)
        torch.matmul(w_mat, cols, out=res)
    if bias is not None:
        out += bias.view(1, o, 1, 1)
    return out


def conv2d_backward(
    x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair,
    groups: int, need_input: bool, need_weight: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
    """Gradients of :func:`conv2d_forward` w.r.t. the input (``W^T @ grad`` then ``fold``) and the weight
    (``grad @ cols^T`` summed over the batch, with ``cols`` recomputed per chunk). Only the requested ones are
    computed."""
    if groups == 1:
        return _backward_nhwc(x, weight, grad_out, stride, padding, dilation, need_input, need_weight)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = grad_out.shape[2:]
    g, og = groups, o // groups
    x = x.contiguous()
    go = grad_out.contiguous().view(n, g, og, ho * wo)
    w_mat = weight.reshape(g, og, -1)
    grad_x = torch.empty_like(x) if need_input else None
    grad_w = torch.zeros(g, og, w_mat.shape[2], dtype=torch.float32 if x.dtype == torch.bfloat16 else x.dtype,
                         device=x.device) if need_weight else None  # fmt: skip
    pointwise = _is_pointwise(weight, stride, padding)
    step = _chunk(n, c * kh * kw * ho * wo * x.element_size())
    for start in range(0, n, step):
        go_chunk = go[start : start + step]
        m = go_chunk.shape[0]
        if grad_w is not None:
            cols = _unfold(x[start : start + step], weight, stride, padding, dilation, groups)
            # sum_m (O/g, L) @ (L, K) == one (O/g, m*L) @ (m*L, K) GEMM per group: a big, fast GEMM at the
            # cost of one copy of the chunk's columns (still within 2x the budget).
            lhs = go_chunk.permute(1, 2, 0, 3).reshape(g, og, m * ho * wo)
            rhs = cols.permute(1, 0, 3, 2).reshape(g, m * ho * wo, -1)
            grad_w += torch.matmul(lhs, rhs).to(grad_w.dtype)
        if grad_x is not None:
            cols_grad = torch.matmul(w_mat.transpose(1, 2), go_chunk)  # (m, g, C/g*kh*kw, L)
            if pointwise:
                grad_x[start : start + step] = cols_grad.view(m, c, h, w)
            else:
                grad_x[start : start + step] = F.fold(
                    cols_grad.view(m, -1, ho * wo), (h, w), (kh, kw), dilation=dilation, padding=padding, stride=stride
                )
    return grad_x, (grad_w.view_as(weight).to(weight.dtype) if grad_w is not None else None)


# ------------------------------------------------------------------------------------------------ autograd
class Conv2dFunction(torch.autograd.Function):
    """Autograd wrapper: saves the input and weight only (never the unfolded buffer)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return conv2d_forward(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x, grad_w = conv2d_backward(x, weight, grad_out, *ctx.conf, need_input=need_x, need_weight=need_w)
        grad_b = grad_out.sum(dim=(0, 2, 3)) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None, None, None


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Pair = 1,
    padding: int | Pair | str = 0,
    dilation: int | Pair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Drop-in for ``F.conv2d`` computed by unfold + matrix multiply, with a hand-written backward.

    Args:
        x: ``(N, C, H, W)`` or unbatched ``(C, H, W)``; contiguous or channels_last (the output follows).
        weight: ``(O, C / groups, kh, kw)``.
        bias: ``(O,)`` or None.
        stride, padding, dilation: int or pair; padding may also be ``"valid"`` or ``"same"`` (stride 1).
        groups: split input and output channels into this many independent convolutions.

    Returns ``(N, O, Hout, Wout)`` with ``Hout = (H + 2 p - d (kh - 1) - 1) // s + 1``.
    """
    stride, dilation = _pair(stride), _pair(dilation)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
            total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
            if total[0] % 2 or total[1] % 2:  # asymmetric: pad the extra pixel on the bottom/right, as PyTorch
                x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
                padding = (0, 0)
            else:
                padding = (total[0] // 2, total[1] // 2)
        else:
            raise ValueError(f"conv2d: invalid padding string {padding!r}, should be one of 'valid', 'same'")
    padding = _pair(padding)
    _check(x, weight, stride, padding, dilation, groups)
    out = Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)
    return out.squeeze(0) if unbatched else out


class CustomConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward is :func:`conv2d` (unfold + matmul, hand-written backward).

    Same constructor, parameter names and initialisation as ``nn.Conv2d``; state dicts load both ways.
    Non-zero ``padding_mode``s pad explicitly first, exactly as ``nn.Conv2d`` does.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, (0, 0), self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
