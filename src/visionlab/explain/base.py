"""What every explanation method is, and the two "explanations" that ignore the model.

An :data:`Explainer` maps ``(model, images, target)`` to one map per image: ``images`` are pixels ``(N, C, H, W)``
in [0, 1], ``target`` the class each map explains ``(N,)`` (long), the result ``(N, H, W)`` (larger = more
important), detached, with no side effect on the model or the images. The sanity checks
(:mod:`visionlab.explain.sanity`) and the faithfulness curves (:mod:`visionlab.explain.faithfulness`) take any
callable of this shape, so a method written outside visionlab is checked exactly like its own.

:func:`edge_map` and :func:`random_map` are the baselines those checks compare against: the Sobel edge magnitude
of the image, which Adebayo et al. 2018 ("Sanity Checks for Saliency Maps", Fig. 1) showed looks much like many
saliency maps while depending on no model at all, and a uniformly random map. A check that cannot tell a method
from these two says nothing about the model.

:func:`gaussian_blur` is the one blur both a baseline image (Integrated Gradients' "blur") and a substrate
(the insertion curve's) are made with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError

__all__ = ["Explainer", "edge_map", "gaussian_blur", "random_map"]

Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``(model, images (N, C, H, W) in [0, 1], target (N,) long) -> maps (N, H, W)``, detached and side-effect free."""

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(model: nn.Module | None, images: Tensor, target: Tensor | None = None) -> Tensor:
    """The Sobel gradient magnitude of each image, maximum over channels: ``(N, H, W)``.

    An :data:`Explainer` that never calls ``model`` or reads ``target`` (both are accepted only to fit the
    signature): it explains the image, not the model, so a sanity check must fail it. Borders are replicated, so
    a constant image maps to zero everywhere (up to
    the convolution's rounding, ~1e-7).
    """
    x = images.detach()
    n, c, h, w = x.shape
    kx = _SOBEL_X.to(device=x.device, dtype=x.dtype)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    padded = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    grad = F.conv2d(padded, kernels)  # (N*C, 2, H, W)
    return grad.pow(2).sum(dim=1).sqrt().reshape(n, c, h, w).amax(dim=1)


def random_map(
    model: nn.Module | None,
    images: Tensor,
    target: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Independent uniform [0, 1) values, one per pixel: ``(N, H, W)`` — the chance-level ordering.

    Drawn on the generator's device (CPU for ``None``, from torch's global generator) and moved to the images'
    device and dtype, so a seeded generator gives the same map on any device.
    """
    n, _, h, w = images.shape
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand((n, h, w), generator=generator, device=device).to(images.device, images.dtype)


def gaussian_blur(images: Tensor, sigma: float, kernel: int | None = None) -> Tensor:
    """Each channel of ``images`` ``(N, C, H, W)`` blurred by a normalized Gaussian of std ``sigma`` pixels.

    The filter is separable (a row pass, then a column pass) and ``kernel`` x ``kernel`` wide; ``None`` (default)
    truncates it at 3 sigma (``2 * max(1, ceil(3 * sigma)) + 1`` taps). Borders are replicated, so a constant
    image stays constant (a zero padding would darken the rim). Detached; same shape, dtype and device.
    """
    check_number(sigma, "sigma", inclusive=False, unit="pixels")
    if kernel is None:
        kernel = 2 * max(1, math.ceil(3 * sigma)) + 1
    check_integer(kernel, "kernel", minimum=1)
    if kernel % 2 == 0:
        raise ConfigError(f"must be odd, got {kernel}", field="kernel")
    x = images.detach()
    offsets = torch.arange(kernel, device=x.device, dtype=x.dtype) - kernel // 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    n, c, h, w = x.shape
    flat = F.pad(x.reshape(n * c, 1, h, w), (kernel // 2,) * 4, mode="replicate")
    flat = F.conv2d(flat, weights.view(1, 1, 1, kernel))
    flat = F.conv2d(flat, weights.view(1, 1, kernel, 1))
    return flat.reshape(n, c, h, w)
