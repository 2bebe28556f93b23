"""Integrated Gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks").

The attribution of pixel ``i`` of an image ``x`` for class ``t`` against a baseline image ``x'`` is

    IG_i(x) = (x_i - x'_i) · ∫_0^1 ∂f_t(x' + α (x - x')) / ∂x_i dα

with ``f_t`` the target class's **logit** (captum's ``IntegratedGradients`` convention for a classifier: the
``forward_func`` output at ``target``; not the softmax probability nor the loss :func:`~visionlab.explain.saliency`
differentiates). By the fundamental theorem of calculus the attributions add up to ``f_t(x) - f_t(x')``
("completeness"); the integral is approximated by a quadrature rule, so they do so only up to the rule's error,
which :func:`integrated_gradients` reports per image as the *completeness gap*
``Σ_i IG_i(x) - (f_t(x) - f_t(x'))`` (captum's ``convergence delta``, same sign).

The rules are captum's, with the same nodes and weights (``captum.attr._utils.approximation_methods``):
``riemann_left/right/middle/trapezoid`` (``steps`` equal intervals; the trapezoid needs ``steps >= 2``) and
``gausslegendre`` (``steps``-point Gauss-Legendre, captum's default, exact for polynomials of degree < 2·steps).

All ``steps × N`` interpolated images are pushed through the model in chunks of ``batch_size`` images (one
forward and one backward pass per chunk, never one per image), and the weighted gradients are summed in place.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError
from visionlab.explain.base import gaussian_blur
from visionlab.explain.targets import check_classes, check_target
from visionlab.runtime import eval_mode

__all__ = ["IG_BASELINES", "RULES", "Attribution", "blurred", "integrated_gradients", "quadrature"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
"""The integration rules :func:`integrated_gradients` accepts (captum's names and nodes)."""

IG_BASELINES = ("black", "blur")
"""The named baselines: ``"black"`` (all zeros) and ``"blur"`` (:func:`blurred`)."""


class Attribution(NamedTuple):
    """What :func:`integrated_gradients` returns.

    Attributes:
        attributions: signed, per channel, ``(N, C, H, W)``, in logit units.
        completeness_gap: ``(N,)``: ``Σ attributions - (f_t(x) - f_t(baseline))`` per image; zero for the exact
            integral, so its size is the quadrature error of the chosen ``rule`` and ``steps``.
    """

    attributions: Tensor
    completeness_gap: Tensor


def quadrature(rule: str, steps: int) -> tuple[Tensor, Tensor]:
    """``(alphas, weights)`` of ``rule`` with ``steps`` nodes on [0, 1], float64, each ``(steps,)``: the integral
    of ``g`` is approximated by ``Σ_k weights_k · g(alphas_k)``. The same nodes and weights as captum's
    ``approximation_parameters(rule)``."""
    if rule not in RULES:
        raise ConfigError(f"must be one of {RULES}, got {rule!r}", field="rule")
    check_integer(steps, "steps", minimum=1)
    if rule == "gausslegendre":
        import numpy as np

        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (1 + nodes)), torch.from_numpy(0.5 * weights)
    if rule == "riemann_trapezoid" and steps < 2:
        raise ConfigError(f"must be an integer >= 2 for riemann_trapezoid (both ends), got {steps!r}", field="steps")
    weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return torch.linspace(0, 1, steps).double(), weights
    first, last = {"riemann_left": (0, 1 - 1 / steps), "riemann_right": (1 / steps, 1)}.get(
        rule, (1 / (2 * steps), 1 - 1 / (2 * steps))
    )
    # float32 nodes, as captum builds them (torch.linspace's default dtype), so the two agree to the last bit
    return torch.linspace(first, last, steps).double(), weights


def blurred(images: Tensor, sigma: float | None = None) -> Tensor:
    """A Gaussian-blurred copy of ``images`` ``(N, C, H, W)``: the "blur" baseline (Fong & Vedaldi 2017;
    Sturmfels et al. 2020, "Visualizing the Impact of Feature Attribution Baselines").

    ``sigma`` in pixels; ``None`` (default) = ``min(H, W) / 10`` (2.8 px on 28×28 Fashion-MNIST, 12.8 px on
    128×128 MiniPlaces): edges and texture are gone, the coarse layout of colour stays, so the attributions
    show what the detail adds. The filter is :func:`~visionlab.explain.base.gaussian_blur`'s: separable,
    truncated at 3 sigma, borders replicated (a constant image stays constant).
    """
    _, _, h, w = images.shape
    sigma = min(h, w) / 10 if sigma is None else check_number(sigma, "blur_sigma", inclusive=False, unit="pixels")
    return gaussian_blur(images, sigma)


def integrated_gradients(
    model: nn.Module,
    images: Tensor,
    target: Tensor | int | None = None,
    *,
    baseline: str | Tensor = "black",
    steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    blur_sigma: float | None = None,
) -> Attribution:
    """Integrated Gradients of the target logit, with the completeness gap of each image.

    Args:
        model: a classifier taking pixels ``(N, C, H, W)`` in [0, 1] and returning logits ``(N, K)``.
        images: ``(N, C, H, W)`` floating-point pixels in [0, 1]; never modified.
        target: the class each attribution explains: ``None`` (default) = the model's top prediction, an ``int``
            for every image, or an integer tensor ``(N,)``.
        baseline: ``"black"`` (default: zeros, the paper's choice for images), ``"blur"`` (:func:`blurred` with
            ``blur_sigma``), or a tensor broadcastable to ``images`` (e.g. ``(C, H, W)``).
        steps: quadrature nodes, >= 1 (>= 2 for ``riemann_trapezoid``); default 50 (captum's).
        rule: one of :data:`RULES`; default ``"gausslegendre"`` (captum's default).
        batch_size: interpolated images per forward/backward pass (default: all ``steps × N`` at once).
        blur_sigma: the ``"blur"`` baseline's Gaussian sigma in pixels (default ``min(H, W) / 10``).

    Returns:
        :class:`Attribution`: signed attributions ``(N, C, H, W)`` and the completeness gap ``(N,)``, detached,
        on ``images``' device and dtype.

    The contract of :func:`~visionlab.explain.saliency`: eval mode inside (every submodule's flag restored, also
    on an exception), ``torch.autograd.grad`` only (no ``.grad`` anywhere, ``requires_grad`` untouched), usable
    under ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"integrated_gradients: images must be a floating-point tensor (N, C, H, W), got {got}")
    alphas, weights = quadrature(rule, steps)
    check_integer(batch_size, "batch_size", minimum=1, optional=True)
    reference = _baseline(images, baseline, blur_sigma)
    target = check_target(target, images, who="integrated_gradients")
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x, x0 = images.detach().clone(), reference.clone()
        with torch.no_grad():
            ends = torch.cat([model(x), model(x0)])
        if target is None:
            target = ends[: len(x)].argmax(dim=1)
        target = target.clone()  # an ordinary tensor even if made under inference mode
        check_classes(target, ends.shape[1])
        rows = torch.arange(len(x), device=x.device)
        difference = ends[rows, target] - ends[len(x) + rows, target]
        total = _weighted_gradients(model, x, x0, target, (alphas, weights), batch_size or steps * len(x))
    attributions = total * (x - x0)
    gap = attributions.flatten(1).sum(dim=1) - difference
    return Attribution(attributions.detach(), gap.detach())


def _weighted_gradients(
    model: nn.Module, x: Tensor, x0: Tensor, target: Tensor, rule: tuple[Tensor, Tensor], chunk: int
) -> Tensor:
    """``Σ_k w_k ∂f_t(x0 + α_k (x - x0)) / ∂x`` per image, ``(N, C, H, W)``.

    The ``steps × N`` interpolated images are numbered node-major (row ``r`` is node ``r // N`` of image
    ``r % N``, captum's order) and built ``chunk`` rows at a time, so memory is bounded by ``chunk``."""
    alphas, weights = (v.to(device=x.device, dtype=x.dtype) for v in rule)
    n, total = len(x), torch.zeros_like(x)
    for start in range(0, len(alphas) * n, chunk):
        r = torch.arange(start, min(start + chunk, len(alphas) * n), device=x.device)
        node, image = r // n, r % n
        scale = alphas[node].view(-1, 1, 1, 1)
        point = (x0[image] + scale * (x[image] - x0[image])).requires_grad_(True)
        logits = model(point)
        if logits.dim() != 2:
            raise ValueError(f"integrated_gradients: the model must return logits (N, K), got {tuple(logits.shape)}")
        (grad,) = torch.autograd.grad(logits.gather(1, target[image, None]).sum(), point)
        total.index_add_(0, image, grad * weights[node].view(-1, 1, 1, 1))
    return total


def _baseline(images: Tensor, baseline: str | Tensor, blur_sigma: float | None) -> Tensor:
    """The baseline image of each image, ``(N, C, H, W)``, detached."""
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.detach().to(images.device, images.dtype), images.shape)
        except RuntimeError:
            raise ConfigError(
                f"a baseline tensor must broadcast to the images {tuple(images.shape)}, got {tuple(baseline.shape)}",
                field="baseline",
            ) from None
    if baseline not in IG_BASELINES:
        raise ConfigError(f"must be one of {IG_BASELINES} or a tensor, got {baseline!r}", field="baseline")
    if blur_sigma is not None and baseline != "blur":
        raise ConfigError("only with baseline 'blur'", field="blur_sigma")
    return torch.zeros_like(images.detach()) if baseline == "black" else blurred(images, blur_sigma)
