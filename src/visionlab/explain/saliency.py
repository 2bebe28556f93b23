"""Vanilla-gradient saliency maps (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017).

The map of an image ``x`` for class ``t`` is ``|∂ CE(f(x), t) / ∂x|``, the gradient of the per-example
cross-entropy loss with respect to the input pixels, reduced over colour channels by a maximum. With ``t`` the
model's own top prediction (the default) this is exactly what the original course drew.

How this relates to captum's ``Saliency`` (which differentiates the *target logit* ``f(x)_t``):
``CE(f(x), t) = -log_softmax(f(x))_t``, so ``∂CE/∂x = -∂ log_softmax(f(x))_t / ∂x``; after the absolute value
the map equals ``Saliency(lambda x: log_softmax(model(x), 1)).attribute(x, target=t, abs=True)``. It is *not*
the gradient of the logit: ``∂ log_softmax_t/∂x = ∂f_t/∂x - Σ_k softmax_k ∂f_k/∂x``, i.e. the loss gradient
also counts how the input raises the competing classes.

Pixels are in [0, 1] (every visionlab model normalizes inside), so maps are in loss per pixel unit and the
SmoothGrad noise standard deviation is in pixel units too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError
from visionlab.explain.targets import check_classes, check_target
from visionlab.runtime import eval_mode

__all__ = ["REDUCTIONS", "saliency"]

REDUCTIONS = ("max", "mean")
"""Channel reductions :func:`saliency` accepts besides ``None`` (keep the channels)."""


def saliency(
    model: nn.Module,
    images: Tensor,
    target: Tensor | int | None = None,
    *,
    abs: bool = True,
    reduce: str | None = "max",
    smoothgrad_samples: int = 0,
    noise_std: float = 0.1,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Saliency maps of ``model`` on ``images``: the input gradient of each example's cross-entropy loss.

    Args:
        model: a classifier taking pixels ``(N, C, H, W)`` in [0, 1] and returning logits ``(N, K)``.
        images: ``(N, C, H, W)`` floating-point pixels in [0, 1]; never modified.
        target: the class each map explains: ``None`` (default, the original course) = the model's own top
            prediction ``model(images).argmax(1)``; an ``int`` for every image; or an integer tensor ``(N,)``.
        abs: take the absolute value of the gradient (default, as in Simonyan et al.); ``False`` keeps its sign.
        reduce: ``"max"`` (default, the original) or ``"mean"`` over colour channels -> ``(N, H, W)``;
            ``None`` keeps them -> ``(N, C, H, W)``.
        smoothgrad_samples: 0 (default) = plain gradient; ``n > 0`` = SmoothGrad: the mean over ``n`` copies of
            each image with Gaussian noise of std ``noise_std`` added and clipped to [0, 1]. ``abs`` is applied
            to each sample before averaging and ``reduce`` after it (as captum's ``NoiseTunnel`` over
            ``Saliency`` does). The target stays the one of the clean image (its prediction when ``None``).
        noise_std: SmoothGrad noise standard deviation in pixel units (default 0.1, i.e. 10% of the pixel
            range; Smilkov et al. recommend 10-20% of the input range).
        generator: source of the SmoothGrad noise, for reproducible maps; ``None`` draws from torch's global
            generator. The noise does not depend on ``batch_size``.
        batch_size: examples per forward/backward pass (default: all at once), to bound memory.

    Returns:
        The maps, detached, on ``images``' device and dtype: ``(N, H, W)``, or ``(N, C, H, W)`` with
        ``reduce=None``.

    The gradients are taken in eval mode (batch norm uses its running statistics, dropout is off), so each
    example's map depends on that example alone and nothing is learned. The call has no side effect on the
    model or the input: every submodule's train/eval flag is restored (also when it raises); parameters'
    ``requires_grad`` and ``.grad``, buffers, and ``images``' ``requires_grad`` / ``.grad`` are never touched.
    Gradients are switched on inside, so it may be called under ``torch.no_grad()`` or ``torch.inference_mode()``.
    The gradient is per example (a summed, not averaged, loss), so a map does not depend on the batch size;
    a mean-reduced loss (``nn.CrossEntropyLoss``'s default) would divide every map by N, a scale the
    mean-relative threshold of :func:`~visionlab.explain.red_overlay` cancels, so the overlays are the same.
    """
    _check_options(images, reduce, smoothgrad_samples, noise_std, batch_size)
    target = check_target(target, images)
    step = batch_size or max(len(images), 1)
    with eval_mode(model):
        if smoothgrad_samples == 0:
            maps = _gradient_maps(model, images, target, abs, step)
        else:
            maps = _smoothgrad_maps(model, images, target, abs, step, (smoothgrad_samples, noise_std, generator))
    return _reduce_channels(maps, reduce)


def _smoothgrad_maps(
    model: nn.Module,
    images: Tensor,
    target: Tensor | None,
    abs: bool,
    step: int,
    noise: tuple[int, float, torch.Generator | None],
) -> Tensor:
    """The mean of :func:`_gradient_maps` over ``samples`` noisy copies of ``images`` (``noise`` is ``(samples,
    std, generator)``: Gaussian noise of that std, clipped to [0, 1]), each explaining the clean images'
    ``target`` (their own prediction when ``None``)."""
    samples, std, generator = noise
    if target is None:
        target = _predict(model, images, step)
    maps = torch.zeros_like(images)
    for _ in range(samples):
        noisy = (images.detach() + std * _noise(images, generator)).clamp_(0.0, 1.0)
        maps += _gradient_maps(model, noisy, target, abs, step)
    return maps.div_(samples)


def _reduce_channels(maps: Tensor, reduce: str | None) -> Tensor:
    """``(N, C, H, W)`` maps -> their max or mean over channels ``(N, H, W)``, or as they are for ``None``."""
    if reduce == "max":
        return maps.amax(dim=1)
    if reduce == "mean":
        return maps.mean(dim=1)
    return maps


def _gradient_maps(model: nn.Module, images: Tensor, target: Tensor | None, abs: bool, step: int) -> Tensor:
    """``∂ CE / ∂ images`` per example, ``step`` examples per pass, absolute value if ``abs``."""
    grads = torch.empty_like(images)
    for start in range(0, len(images), step):
        chunk = slice(start, start + step)
        grads[chunk] = _input_gradient(model, images[chunk], None if target is None else target[chunk])
    return grads.abs_() if abs else grads


def _input_gradient(model: nn.Module, images: Tensor, target: Tensor | None) -> Tensor:
    """Gradient of ``Σ_i CE(model(x)_i, target_i)`` w.r.t. a fresh leaf copy ``x`` of ``images``.

    ``torch.autograd.grad`` returns the gradient instead of accumulating ``.grad`` anywhere, so neither the
    parameters' nor the caller's tensors change; it also skips the parameters' gradients. Gradients are
    switched on here, so a caller's ``torch.no_grad()`` or ``torch.inference_mode()`` does not get in the way
    (cloning outside inference mode turns an inference tensor into an ordinary one).
    """
    with torch.inference_mode(False), torch.enable_grad():  # also when called under no_grad / inference_mode
        x = images.detach().clone().requires_grad_(True)
        logits = model(x)
        if logits.dim() != 2:
            raise ValueError(f"saliency: the model must return logits (N, K), got {tuple(logits.shape)}")
        if target is None:
            target = logits.detach().argmax(dim=1)
        else:
            check_classes(target, logits.shape[1])
            target = target.clone()  # an ordinary tensor even if made under inference mode
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor, step: int) -> Tensor:
    """The model's top-1 class per image, ``(N,)``."""
    return torch.cat([model(images[i : i + step]).argmax(dim=1) for i in range(0, len(images), step)])


def _noise(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``images``, drawn on the generator's device, moved to the images'."""
    device = generator.device if generator is not None else images.device
    noise = torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype)
    return noise.to(images.device)


def _check_options(
    images: Tensor, reduce: str | None, smoothgrad_samples: int, noise_std: float, batch_size: int | None
) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"saliency: images must be a floating-point tensor (N, C, H, W) in [0, 1], got {got}")
    if reduce is not None and reduce not in REDUCTIONS:
        raise ConfigError(f"must be one of {REDUCTIONS} or None, got {reduce!r}", field="reduce")
    check_integer(smoothgrad_samples, "smoothgrad_samples", minimum=0)
    check_number(noise_std, "noise_std", unit="pixel units")
    check_integer(batch_size, "batch_size", minimum=1, optional=True)
