"""Hand-written operators: the unfold/fold convolution."""

from visionlab.ops.conv import (
    Conv2dFunction,
    CustomConv2d,
    conv2d,
    conv2d_backward,
    conv2d_forward,
    get_unfold_budget,
    set_unfold_budget,
)

__all__ = [
    "Conv2dFunction",
    "CustomConv2d",
    "conv2d",
    "conv2d_backward",
    "conv2d_forward",
    "get_unfold_budget",
    "set_unfold_budget",
]
