"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization").

For a convolutional feature map ``A`` ``(N, C, h, w)`` of a layer and the target class's logit ``y_t``, each
channel's weight is its spatially averaged gradient ``α_c = mean_{ij} ∂y_t / ∂A_{c,ij}`` and the map is
``ReLU(Σ_c α_c A_c)`` ``(N, h, w)``, upsampled to the image bilinearly. That is captum's
``LayerGradCam(..., relu_attributions=True)`` followed by ``LayerAttribution.interpolate(..., "bilinear")``
(``F.interpolate`` without ``align_corners``, i.e. ``align_corners=False``: pixel centres, not corners, aligned)
and, up to its per-image min-max scaling, pytorch-grad-cam's ``GradCAM`` (``cv2.resize``'s ``INTER_LINEAR``, which
also aligns pixel centres). visionlab keeps the logit scale (no min-max), so maps of different images compare.

**Which layers.** A layer is usable when its output is a feature map: a 4-D tensor ``(N, C, h, w)`` with more
than one position, whose ``C`` is the ``out_channels`` of the last ``nn.Conv2d`` (or subclass) that ran before
it finished (that convolution included). This takes a convolution, the activation, batch norm or pooling after
it and the blocks and stages ending in one, and leaves out the input normalization (no convolution yet), a
global pool (one position) and channels-last grids such as the ViT's token grid ``(N, h, w, dim)`` — for the
ViT, the patch-embedding convolution (``patch_embed.proj``) is the feature map. The layer is found by running
the model once with a forward hook on every module (:func:`gradcam_layers`); the default is the last usable one
to finish, which for a stage or block is the container itself (the same tensor as its last child's output). A
module called several times (a shared ``ReLU``) is read at its last call. Every hook is removed on the way out,
also when the model or the check raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionlab.checks import check_integer
from visionlab.errors import ConfigError
from visionlab.explain.targets import check_classes, check_target
from visionlab.runtime import eval_mode

__all__ = ["gradcam", "gradcam_layers"]


def gradcam_layers(model: nn.Module, images: Tensor) -> list[str]:
    """The names (as in ``model.named_modules()``) of the layers :func:`gradcam` can use, in the order they
    finish in a forward pass of ``images[:1]`` (the last is the default). Empty for a model without a
    convolutional feature map. Runs in eval mode under ``no_grad``; the model is left as it was."""
    _check_images(images)
    found: list[str] = []
    state = {"channels": None}
    names = {module: name for name, module in model.named_modules() if module is not model}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(module, nn.Conv2d):
            state["channels"] = module.out_channels
        if _is_feature_map(output, state["channels"]):
            name = names[module]
            if name in found:  # called again: its place is its last call
                found.remove(name)
            found.append(name)

    with _hooks(names, record), eval_mode(model), torch.no_grad():
        model(images[:1].detach())
    return found


def gradcam(
    model: nn.Module,
    images: Tensor,
    target: Tensor | int | None = None,
    *,
    layer: str | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Grad-CAM maps of ``model`` on ``images`` at ``layer``, upsampled to the images: ``(N, H, W)``, >= 0.

    Args:
        model: a classifier taking pixels ``(N, C, H, W)`` in [0, 1] and returning logits ``(N, K)``.
        images: ``(N, C, H, W)`` floating-point pixels in [0, 1]; never modified.
        target: the class each map explains: ``None`` (default) = the model's top prediction, an ``int`` for
            every image, or an integer tensor ``(N,)``.
        layer: a name from :func:`gradcam_layers` (``None``, the default: the last of them).
        batch_size: images per forward/backward pass (default: all at once).

    Raises:
        ConfigError: ``field="layer"`` for an unknown name or a layer whose output is not a feature map, and
            ``field="method"`` for a model with no usable layer; the message lists the usable layers.

    The contract of :func:`~visionlab.explain.saliency`: eval mode inside (every flag restored, also on an
    exception), ``torch.autograd.grad`` only (no ``.grad``, ``requires_grad`` untouched), no hook left behind,
    usable under ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    modules = dict(model.named_modules())
    # A named layer is checked in the passes themselves (one probe forward less); the default one is found first.
    name = layer if layer in modules and layer != "" else resolve_layer(model, images, layer)
    check_integer(batch_size, "batch_size", minimum=1, optional=True)
    target = check_target(target, images, who="gradcam")
    step = batch_size or max(len(images), 1)
    maps = []
    for i in range(0, len(images), step):
        cam = _cams(model, modules[name], images[i : i + step], None if target is None else target[i : i + step])
        if cam is None:  # the named layer gave no feature map: the error that lists the usable ones
            resolve_layer(model, images, name)
            raise ConfigError(f"{name!r}: a feature map for the first image but not for images {i}..", field="layer")
        maps.append(cam)
    cam = torch.cat(maps) if maps else images.new_zeros(0, 1, 1, 1)
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def resolve_layer(model: nn.Module, images: Tensor, layer: str | None) -> str:
    """``layer`` if it is usable for Grad-CAM, else (``None``) the default one; a typed error naming the usable
    layers otherwise (see :func:`gradcam`)."""
    usable = gradcam_layers(model, images)
    if not usable:
        raise ConfigError(
            "gradcam needs a convolutional feature map (N, C, h, w) and this model has none (no nn.Conv2d whose "
            "output reaches a layer unflattened); use saliency, smoothgrad or ig",
            field="method",
        )
    listed = ", ".join(usable)
    if layer is None:
        return usable[-1]
    if layer not in usable:
        known = layer in dict(model.named_modules()) and layer != ""
        why = "its output is not a convolutional feature map (N, C, h, w)" if known else "no such module"
        raise ConfigError(f"{layer!r}: {why}; usable layers: {listed}", field="layer")
    return layer


def _cams(model: nn.Module, module: nn.Module, images: Tensor, target: Tensor | None) -> Tensor | None:
    """``ReLU(Σ_c α_c A_c)`` at ``module``'s output, ``(n, 1, h, w)``, for one chunk of images; ``None`` when that
    output (at its last call) is not a convolutional feature map by :func:`gradcam_layers`' rule."""
    captured: list[Tensor] = []
    state: dict[str, Any] = {"channels": None, "usable": False}

    def conv(layer: nn.Module, _inputs: object, _output: object) -> None:
        state["channels"] = layer.out_channels

    def keep(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor | None:
        state["usable"] = _is_feature_map(output, state["channels"])
        if not state["usable"]:
            return None
        captured[:] = [output]
        return output.clone()  # an in-place op after the layer (ReLU(inplace=True)) must not change A

    convs = {m: "" for m in model.modules() if isinstance(m, nn.Conv2d)}  # registered first: they run first
    with (
        eval_mode(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        _hooks(convs, conv),
        _hooks({module: ""}, keep),
    ):
        x = images.detach().clone().requires_grad_(True)  # so A needs grad even if every parameter is frozen
        logits = model(x)
        if not state["usable"]:
            return None
        if logits.dim() != 2:
            raise ValueError(f"gradcam: the model must return logits (N, K), got {tuple(logits.shape)}")
        if target is None:
            target = logits.detach().argmax(dim=1)
        check_classes(target, logits.shape[1])
        activations = captured[-1]
        (grads,) = torch.autograd.grad(logits.gather(1, target.clone()[:, None]).sum(), activations)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * activations).sum(dim=1, keepdim=True).relu().detach()


@contextmanager
def _hooks(modules: dict[nn.Module, str], hook: object) -> Iterator[None]:
    """``hook`` registered as a forward hook on each of ``modules``, all removed on exit (also on an error)."""
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_hook(hook))  # type: ignore[arg-type]
        yield
    finally:
        for handle in handles:
            handle.remove()


def _is_feature_map(output: object, channels: int | None) -> bool:
    return (
        isinstance(output, Tensor)
        and output.dim() == 4
        and channels is not None
        and output.shape[1] == channels
        and output.shape[2] * output.shape[3] > 1
    )


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"gradcam: images must be a floating-point tensor (N, C, H, W) in [0, 1], got {got}")
