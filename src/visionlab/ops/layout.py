"""Memory layout: NHWC (channels-last) tensors whose strides say so.

PyTorch infers a tensor's layout from its strides, and where a dimension has size 1 the strides are ambiguous:
``t.contiguous(memory_format=torch.channels_last)`` returns an ``(N, 1, H, W)`` batch (one input channel, as
Fashion-MNIST's) or a ``(C_out, 1, kh, kw)`` weight unchanged, with its NCHW strides, because both layouts address
its memory the same way. A convolution then reads NCHW from input and weight and gives an NCHW output, so the
first layers of a channels-last model ran NCHW: on the 2-core AVX-512 EPYC, SimpleNet's first max pool took
~18 ms per batch of 128 that way against ~2 ms in NHWC. :func:`channels_last` spells the NHWC strides out.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["channels_last", "channels_last_module"]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in NHWC memory order with NHWC strides ``(H*W*C, 1, W*C, C)``, whatever its sizes.

    A view of ``t`` when its memory is already in NHWC order (always so for one channel: no copy), an NHWC copy
    otherwise; autograd flows through either. Tensors that are not 4-d are returned as they are."""
    if t.dim() != 4:
        return t
    if not t.is_contiguous(memory_format=torch.channels_last):
        t = t.contiguous(memory_format=torch.channels_last)
    _, c, h, w = t.shape
    strides = (h * w * c, 1, w * c, c)
    return t if t.stride() == strides else t.as_strided(t.shape, strides, t.storage_offset())


def channels_last_module(model: nn.Module) -> nn.Module:
    """``model`` with every 4-d parameter and buffer in NHWC (:func:`channels_last`, in place through ``.data``,
    so optimizers and references keep the same parameter objects); returns ``model``."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            tensor.data = channels_last(tensor.data)
    return model
