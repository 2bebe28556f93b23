"""2D convolution as unfold + matrix multiply, with a hand-written backward (matrix multiply + fold).

Four pieces, in the order data flows through them:

* :func:`conv2d_forward` / :func:`conv2d_backward` — pure tensor functions, no autograd;
* :class:`Conv2dFunction` — a thin ``torch.autograd.Function`` that saves the weight and, only when the weight
  needs a gradient, the input — never the unfolded buffer;
* :func:`conv2d` — the functional form, with ``F.conv2d``'s signature;
* :class:`CustomConv2d` — a drop-in ``nn.Conv2d`` (same constructor, parameters, initialisation, state dict).

The algebra. ``unfold`` turns a ``(m, C, H, W)`` chunk into columns ``(m, C*kh*kw, L)``, one per output pixel
(``L = Hout * Wout``). Then, per group, ``out = W @ cols``; ``grad_W = grad_out @ cols^T`` summed over the batch;
``grad_cols = W^T @ grad_out`` and ``grad_input = fold(grad_cols)``, fold being unfold's adjoint (it sums every
column entry back onto the input pixel it was copied from); ``grad_bias`` sums ``grad_out``.

Memory. The columns are ``kh*kw / stride^2`` times the input: 0.6 GB for SimpleNet's first 3x3 layer at batch
256 on MiniPlaces. They are never held whole: the batch is processed in chunks whose columns fit a byte budget
(:func:`set_unfold_budget`), and they are *not* kept between forward and backward. Backward keeps the input
(which autograd usually holds anyway, as the previous layer's output) and unfolds each chunk again for the weight
gradient. The trade: one extra unfold per chunk in backward — a memory-bound copy costing a tenth to a fifth of
the chunk's matrix multiplies at SimpleNet's shapes — for a peak memory of a few budgets on top of what
``F.conv2d`` needs, independent of the batch size and of ``kh*kw``.

Speed (measured on a 2-core AVX-512 CPU, see ``bench/conv.py``):

* the default budget is small (8 MiB): a chunk whose columns stay in the core caches while the matrix multiply
  reads them is faster than one huge buffer streamed through memory (and a fresh huge buffer also costs
  page faults on every call), so *raising* the budget buys no speed on a CPU; on a GPU, where each chunk is a
  kernel launch, a larger budget (hundreds of MiB) is the better choice;
* unfold is one strided copy from a ``Tensor.unfold`` window view of the padded input, and fold is ``kh*kw``
  strided in-place adds into such a view: the same maps as ``F.unfold`` / ``F.fold`` (the tests check this),
  which are 3-10x slower on the CPU (scalar im2col/col2im loops);
* with 16 or more input channels (and one group) the work is done channels-last: columns are rows
  ``(m*L, kh*kw*C)`` copied in runs of C contiguous values, and the output and gradients are matrices of rows;
  with fewer channels (the first layer) channel-first runs of ``Wout`` values are the longer ones, forward
  writes ``W @ cols`` straight into the output and backward lays the columns out ``(C*kh*kw, m*L)``. Either
  way each product is one large matrix multiply per chunk (per group);
* 1x1, stride-1, unpadded convolutions need no unfold: forward and input gradient are single batched matrix
  multiplies over channels for the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

__all__ = ["Conv2dFunction", "CustomConv2d", "conv2d", "conv2d_backward", "conv2d_forward", "get_unfold_budget",
           "set_unfold_budget"]  # fmt: skip

Pair = tuple[int, int]

_UNFOLD_BUDGET = 8 * 2**20  # bytes of unfolded columns per chunk; see the module docstring for why it is small


def set_unfold_budget(nbytes: int) -> None:
    """Set the most bytes one chunk's unfolded columns may take (default 8 MiB).

    At least one sample is always unfolded, whatever the budget. Backward holds about two such buffers at once
    (the columns and their gradient).
    """
    global _UNFOLD_BUDGET
    if int(nbytes) <= 0:
        raise ValueError(f"unfold budget must be a positive number of bytes, got {nbytes}")
    _UNFOLD_BUDGET = int(nbytes)


def get_unfold_budget() -> int:
    """The current per-chunk budget for unfolded columns, in bytes."""
    return _UNFOLD_BUDGET


# ------------------------------------------------------------------------------------------------ helpers
def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Pair, padding: Pair,
           dilation: Pair, groups: int) -> None:  # fmt: skip
    """Raise errors as specific as ``F.conv2d``'s for the arguments it would reject."""
    if x.dim() != 4:
        raise RuntimeError(
            f"conv2d: expected 3-D (unbatched) or 4-D (batched) input, got input of size {list(x.shape)}"
        )
    if weight.dim() != 4:
        raise RuntimeError(
            f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kh, kw), got size {list(weight.shape)}"
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
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeError(f"conv2d: bias of size {list(bias.shape)} does not match {weight.shape[0]} output channels")
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise RuntimeError(
                f"conv2d: input ({x.dtype}, {x.device}) and {name} ({t.dtype}, {t.device}) must have the same "
                "dtype and device"
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


def _is_pointwise(kernel: Pair, stride: Pair, padding: Pair) -> bool:
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _pixel_major(channels: int, groups: int, kernel: Pair, stride: Pair, padding: Pair) -> bool:
    """Whether to work channels-last: unfold and fold then copy runs of C contiguous values (fast when a run
    fills a cache line), where channel-first copies runs of ``Wout`` values, short on small feature maps."""
    return groups == 1 and channels >= 16 and not _is_pointwise(kernel, stride, padding)


def _chunk(n: int, per_sample_bytes: int) -> int:
    """Samples per chunk: as many as fit the budget, at least one."""
    return max(1, min(n, _UNFOLD_BUDGET // max(1, per_sample_bytes)))


def _windows(xp: torch.Tensor, kernel: Pair, stride: Pair, dilation: Pair) -> torch.Tensor:
    """A padded ``(m, C, Hp, Wp)`` -> the view ``(m, C, kh, kw, Hout, Wout)`` of every kernel tap's input pixel.

    A view, not a copy, whatever ``xp``'s memory format: writing through it writes into ``xp`` (which is how
    :func:`_fold` works).
    """
    (kh, kw), (dh, dw) = kernel, dilation
    win = xp.unfold(2, dh * (kh - 1) + 1, stride[0]).unfold(3, dw * (kw - 1) + 1, stride[1])
    return win[..., ::dh, ::dw].permute(0, 1, 4, 5, 2, 3)


def _unfold(x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, layout: str):
    """Chunk ``(m, C, H, W)`` -> its columns, as one strided copy, in one of three layouts:

    * ``"sample"``: ``(m, C*kh*kw, L)``, exactly ``F.unfold``;
    * ``"channel"``: ``(C*kh*kw, m*L)``, the same transposed so a chunk is one matrix;
    * ``"pixel"``: ``(m*L, kh*kw*C)``, one row per output pixel, ordered like a channels_last weight.

    For ``"pixel"`` the chunk is first padded into a channels-last copy, so the columns copy C-long runs.
    """
    m, c = x.shape[:2]
    if _is_pointwise(kernel, stride, padding) and layout != "pixel":
        cols = x.reshape(m, c, -1)  # a view for contiguous input
        return cols.transpose(0, 1).reshape(c, -1) if layout == "channel" else cols
    if layout == "pixel":  # pad (m, H, W, C) rows: one copy, which is channels_last seen as (m, C, Hp, Wp)
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding[1], padding[1], padding[0], padding[0]))
        xp = xp.contiguous().permute(0, 3, 1, 2)
    elif padding != (0, 0):
        xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    else:
        xp = x
    win = _windows(xp, kernel, stride, dilation)  # (m, C, kh, kw, Ho, Wo)
    k = c * kernel[0] * kernel[1]
    if layout == "pixel":
        return win.permute(0, 4, 5, 2, 3, 1).reshape(-1, k)
    if layout == "channel":
        return win.permute(1, 2, 3, 0, 4, 5).reshape(k, -1)
    return win.reshape(m, k, -1)


def _fold(cols: torch.Tensor, size: tuple[int, int], kernel: Pair, stride: Pair, padding: Pair,
          dilation: Pair) -> torch.Tensor:  # fmt: skip
    """Adjoint of :func:`_unfold`: ``(m, C, kh, kw, Hout, Wout)`` (any strides) -> ``(m, C, H, W)``.

    Equal to ``F.fold``: each tap's column gradients are added onto the pixels that tap read, ``kh*kw``
    strided in-place adds into a zero-initialised padded buffer (channels_last when ``cols`` has C innermost).
    """
    m, c, kh, kw = cols.shape[:4]
    h, w = size
    fmt = torch.channels_last if cols.stride(1) == 1 and c > 1 else torch.contiguous_format
    out = torch.empty(m, c, h + 2 * padding[0], w + 2 * padding[1], dtype=cols.dtype, device=cols.device,
                      memory_format=fmt).zero_()  # fmt: skip
    win = _windows(out, kernel, stride, dilation)
    for i in range(kh):
        for j in range(kw):
            win[:, :, i, j] += cols[:, :, i, j]  # within one tap no two outputs read the same pixel
    return out[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]


def _format(like: torch.Tensor) -> torch.memory_format:
    """The memory format ``F.conv2d`` gives results for input ``like``: channels_last if ``like`` is (and is not
    also plainly contiguous), else contiguous."""
    if not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _follow_format(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` in ``like``'s memory format (see :func:`_format`); no copy when it already is."""
    return t.contiguous(memory_format=_format(like))


def _accumulator(weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros for the weight gradient, summed over chunks in float32 when the weights are bfloat16/float16."""
    acc = torch.float32 if weight.dtype in (torch.bfloat16, torch.float16) else weight.dtype
    return torch.zeros(shape, dtype=acc, device=weight.device)


# ------------------------------------------------------------------------------------------------ pure ops
def conv2d_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Pair, padding: Pair, dilation: Pair,
    groups: int,
) -> torch.Tensor:  # fmt: skip
    """``out[n, g] = W[g] @ cols[n, g] (+ b)``, chunk by chunk; ``(N, C, H, W)`` -> ``(N, O, Hout, Wout)``."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    kernel, g, og = (kh, kw), groups, o // groups
    ho, wo = _out_size(h, kh, stride[0], padding[0], dilation[0]), _out_size(w, kw, stride[1], padding[1], dilation[1])
    # `out` is a fresh base tensor in its final shape, written chunk by chunk (in-place ReLU on it stays legal).
    if _is_pointwise(kernel, stride, padding):  # no unfold: one batched matrix multiply over channels
        out = torch.empty(n, o, h, w, dtype=x.dtype, device=x.device)
        res = out.view(n, g, og, h * w)
        torch.matmul(weight.reshape(g, og, cg), x.reshape(n, g, cg, h * w), out=res)
        if bias is not None:
            res += bias.view(g, og, 1)
        return _follow_format(out, x)
    step = _chunk(n, c * kh * kw * ho * wo * x.element_size())
    if _pixel_major(c, g, kernel, stride, padding):
        w_rows = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)  # (O, kh*kw*C), like the columns
        out = torch.empty(n, o, ho, wo, dtype=x.dtype, device=x.device, memory_format=_format(x))
        for start in range(0, n, step):
            cols = _unfold(x[start : start + step], kernel, stride, padding, dilation, "pixel")
            res = torch.mm(cols, w_rows.t()) if bias is None else torch.addmm(bias, cols, w_rows.t())
            out[start : start + step] = res.view(-1, ho, wo, o).permute(0, 3, 1, 2)  # rows -> out's format
        return out
    w_mat = weight.reshape(g, og, cg * kh * kw)
    out = torch.empty(n, o, ho, wo, dtype=x.dtype, device=x.device)
    for start in range(0, n, step):
        chunk = x[start : start + step]
        m = chunk.shape[0]
        cols = _unfold(chunk, kernel, stride, padding, dilation, "sample").view(m, g, -1, ho * wo)
        res = out[start : start + m].view(m, g, og, ho * wo)
        torch.matmul(w_mat, cols, out=res)
        if bias is not None:
            res += bias.view(g, og, 1)
    return _follow_format(out, x)


def conv2d_backward(
    x: torch.Tensor | None, weight: torch.Tensor, grad_out: torch.Tensor, stride: Pair, padding: Pair,
    dilation: Pair, groups: int, need_input: bool, need_weight: bool, input_shape: torch.Size | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
    """Gradients of :func:`conv2d_forward` w.r.t. the input (``W^T @ grad`` then fold) and the weight
    (``grad @ cols^T`` summed over the batch, ``cols`` unfolded again per chunk). Only the requested ones are
    computed; ``x`` may be None when the weight gradient is not (then ``input_shape`` gives its shape and the
    input gradient follows ``grad_out``'s memory format)."""
    n, c, h, w = x.shape if x is not None else input_shape
    o, cg, kh, kw = weight.shape
    kernel, g, og, kg = (kh, kw), groups, o // groups, cg * kh * kw
    ho, wo = grad_out.shape[2:]
    like = x if x is not None else grad_out  # the memory format the input gradient follows
    step = _chunk(n, c * kh * kw * ho * wo * like.element_size())  # the same chunks as forward
    grad_x = grad_w = None
    if _pixel_major(c, g, kernel, stride, padding):
        w_rows = weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c)
        grad_w = _accumulator(weight, (o, kh * kw * c)) if need_weight else None
        if need_input:
            grad_x = torch.empty(n, c, h, w, dtype=like.dtype, device=like.device, memory_format=_format(like))
        for start in range(0, n, step):
            g_rows = grad_out[start : start + step].permute(0, 2, 3, 1).reshape(-1, o)  # (m*L, O)
            m = g_rows.shape[0] // (ho * wo)
            if need_weight:  # columns recomputed per chunk, never kept
                grad_w += g_rows.t() @ _unfold(x[start : start + m], kernel, stride, padding, dilation, "pixel")
            if need_input:
                grad_cols = (g_rows @ w_rows).view(m, ho, wo, kh, kw, c).permute(0, 5, 3, 4, 1, 2)
                grad_x[start : start + m] = _fold(grad_cols, (h, w), kernel, stride, padding, dilation)
        if grad_w is not None:
            grad_w = grad_w.view(o, kh, kw, c).permute(0, 3, 1, 2)
    else:
        go = grad_out.contiguous().view(n, g, og, ho * wo)
        w_mat = weight.reshape(g, og, kg)
        if need_input and _is_pointwise(kernel, stride, padding):  # fold is the identity: one batched matmul
            grad_x = torch.matmul(w_mat.transpose(1, 2), go).view(n, c, h, w)
            need_input = False
        elif need_input:
            grad_x = torch.empty(n, c, h, w, dtype=like.dtype, device=like.device)
        grad_w = _accumulator(weight, (g, og, kg)) if need_weight else None
        for start in range(0, n, step) if need_input or need_weight else ():
            m = min(step, n - start)
            # The chunk's grad_out channel-major, (g, O/g, m*L): each product below is one matrix multiply.
            g_rows = go[start : start + m].permute(1, 2, 0, 3).reshape(g, og, m * ho * wo)
            if need_weight:  # columns recomputed per chunk, never kept
                cols = _unfold(x[start : start + m], kernel, stride, padding, dilation, "channel")
                grad_w += torch.bmm(g_rows, cols.view(g, kg, -1).transpose(1, 2))
            if need_input:
                grad_cols = torch.bmm(w_mat.transpose(1, 2), g_rows).view(c, kh, kw, m, ho, wo)
                grad_x[start : start + m] = _fold(grad_cols.permute(3, 0, 1, 2, 4, 5), (h, w), kernel, stride,
                                                  padding, dilation)  # fmt: skip
    if grad_x is not None:
        grad_x = _follow_format(grad_x, like)
    if grad_w is not None:
        grad_w = grad_w.to(weight.dtype).reshape(o, cg, kh, kw).contiguous()
    return grad_x, grad_w


# ------------------------------------------------------------------------------------------------ autograd
class Conv2dFunction(torch.autograd.Function):
    """Autograd wrapper: saves the input (only if the weight needs a gradient) and the weight, never the
    unfolded buffer. Not twice differentiable."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):  # type: ignore[override]
        # The input only for the weight gradient; the weight (a parameter, alive anyway) for shapes and W^T.
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.input_shape = x.shape
        ctx.has_bias = bias is not None
        return conv2d_forward(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x or need_w:
            grad_x, grad_w = conv2d_backward(x, weight, grad_out, *ctx.conf, need_input=need_x,
                                             need_weight=need_w, input_shape=ctx.input_shape)  # fmt: skip
        if need_b and ctx.has_bias:
            grad_b = grad_out.sum(dim=(0, 2, 3))
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

    Example::

        >>> conv2d(torch.randn(2, 3, 12, 12), torch.randn(64, 3, 7, 7), stride=2, padding=3).shape
        torch.Size([2, 64, 6, 6])
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
            total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)] if weight.dim() == 4 else [0, 0]
            if total[0] % 2 or total[1] % 2:  # asymmetric: the extra pixel goes bottom/right, as in PyTorch
                x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
                padding = (0, 0)
            else:
                padding = (total[0] // 2, total[1] // 2)
        else:
            raise ValueError(f"conv2d: invalid padding string {padding!r}, should be one of 'valid', 'same'")
    padding = _pair(padding)
    _check(x, weight, bias, stride, padding, dilation, groups)
    out = Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)
    return out.squeeze(0) if unbatched else out


class CustomConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward is :func:`conv2d` (unfold + matmul, hand-written backward).

    Same constructor, parameter names and initialisation as ``nn.Conv2d``; state dicts load both ways.
    Non-zero ``padding_mode``s pad explicitly first, exactly as ``nn.Conv2d`` does.

    Example::

        >>> conv = CustomConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        >>> conv(torch.randn(2, 3, 12, 12)).shape
        torch.Size([2, 64, 6, 6])
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, (0, 0), self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
