"""The explanation methods by name: one :data:`~visionlab.explain.Explainer` per method, for the command line, the
report and the checks that compare methods.

:data:`METHODS` are the methods that read the model — ``"saliency"`` (the input gradient of the loss, the course's
map), ``"smoothgrad"`` (its mean over noisy copies), ``"ig"`` (Integrated Gradients) and ``"gradcam"``;
:data:`BASELINES` the two "explanations" that do not — ``"edge"`` (Sobel edges of the image) and ``"random"``.
Every one gives a non-negative importance map ``(N, H, W)``:

* saliency and SmoothGrad: ``|gradient|``, maximum over channels (:func:`~visionlab.explain.saliency`);
* Integrated Gradients: ``|Σ_c IG_c|`` (:func:`attribution_map`): the channels are summed first, because IG's
  attributions are additive — a pixel's attribution is the sum of its channels', and the pixels' add up to
  ``f(x) - f(baseline)`` — then the magnitude, because a pixel that lowers the logit matters as much as one
  that raises it (captum's ``visualize_image_attr(sign="absolute_value")`` draws the same);
* Grad-CAM: non-negative already (the ReLU of the weighted feature map), upsampled to the image.

>>> explain(model, images, "ig", steps=32, baseline="blur")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError
from visionlab.explain.base import edge_map, random_map
from visionlab.explain.gradcam import gradcam
from visionlab.explain.integrated import IG_BASELINES, integrated_gradients, quadrature
from visionlab.explain.saliency import saliency
from visionlab.explain.targets import check_target
from visionlab.runtime import eval_mode

__all__ = ["BASELINES", "DEFAULTS", "METHODS", "Method", "attribution_map", "explain", "explainer"]

METHODS = ("saliency", "smoothgrad", "ig", "gradcam")
"""The explanation methods that read the model, in the order the command line and the report show them."""

BASELINES = ("edge", "random")
"""The model-free maps every method is compared against (:func:`~visionlab.explain.edge_map`,
:func:`~visionlab.explain.random_map`)."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "saliency": {"batch_size": None},
    # Smilkov et al. 2017: n = 50 samples; noise 10-20 % of the pixel range (0.1, as `visionlab saliency`)
    "smoothgrad": {"samples": 50, "noise_std": 0.1, "seed": 0, "batch_size": None},
    # captum's defaults: 50 Gauss-Legendre nodes; the paper's black baseline
    "ig": {"steps": 50, "rule": "gausslegendre", "baseline": "black", "blur_sigma": None, "batch_size": None},
    "gradcam": {"layer": None, "batch_size": None},
    "edge": {},
    "random": {"seed": 0},
}
"""Each method's options and their defaults (the options :func:`explainer` accepts)."""


def attribution_map(attributions: Tensor) -> Tensor:
    """Signed per-channel attributions ``(N, C, H, W)`` -> importance ``(N, H, W)``: ``|Σ_c attributions|``."""
    return attributions.sum(dim=1).abs()


@dataclass(frozen=True)
class Method:
    """An :data:`~visionlab.explain.Explainer` with its name and options (defaults filled in), from
    :func:`explainer`; calling it gives the maps ``(N, H, W)``. ``target=None`` explains each image's top
    prediction."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: nn.Module, images: Tensor, target: Tensor | None = None) -> Tensor:
        o = self.options
        if self.name in ("saliency", "smoothgrad"):
            samples = o.get("samples", 0)
            generator = torch.Generator().manual_seed(o["seed"]) if samples else None
            noise = o.get("noise_std", 0.1)
            return saliency(model, images, target, smoothgrad_samples=samples, noise_std=noise, generator=generator,
                            batch_size=o["batch_size"])  # fmt: skip
        if self.name == "ig":
            kwargs = {k: o[k] for k in ("steps", "rule", "baseline", "blur_sigma", "batch_size")}
            return attribution_map(integrated_gradients(model, images, target, **kwargs).attributions)
        if self.name == "gradcam":
            return gradcam(model, images, target, layer=o["layer"], batch_size=o["batch_size"])
        if self.name == "edge":
            return edge_map(model, images, target)
        return random_map(model, images, target, generator=torch.Generator().manual_seed(o["seed"]))


def explainer(name: str, **options: Any) -> Method:
    """The method ``name`` (one of :data:`METHODS` or :data:`BASELINES`) with ``options`` (see :data:`DEFAULTS`):
    ``samples``, ``noise_std``, ``seed`` (SmoothGrad, random); ``steps``, ``rule``, ``baseline``, ``blur_sigma``
    (IG); ``layer`` (Grad-CAM); ``batch_size`` (all that read the model).

    Raises:
        ConfigError: ``field="method"`` for an unknown name (the message lists the names), ``field=<option>`` for
            an option the method does not take or a value out of range (checked here, before any model runs;
            Grad-CAM's layer is checked against the model when called).
    """
    if name not in DEFAULTS:
        raise ConfigError(f"unknown method {name!r}; methods: {', '.join(METHODS + BASELINES)}", field="method")
    accepted = DEFAULTS[name]
    for option in options:
        if option not in accepted:
            takes = ", ".join(accepted) or "no options"
            raise ConfigError(f"not an option of {name} (it takes {takes})", field=option)
    resolved = {**accepted, **options}
    _check(name, resolved)
    return Method(name, resolved)


def explain(
    model: nn.Module, images: Tensor, method: str, target: Tensor | int | None = None, **options: Any
) -> Tensor:
    """The maps ``(N, H, W)`` of ``method`` with ``options`` (:func:`explainer`) for ``images`` ``(N, C, H, W)``
    in [0, 1]; ``target`` ``None`` (default) = the model's top prediction, an ``int`` or an ``(N,)`` tensor.
    Side-effect free, as every method is."""
    method_ = explainer(method, **options)
    target = check_target(target, images, who="explain")
    if target is None and method not in BASELINES:
        with eval_mode(model), torch.inference_mode(False), torch.no_grad():
            target = model(images.detach()).argmax(dim=1)
    return method_(model, images, target)


def _check(name: str, o: dict[str, Any]) -> None:
    """The option values of method ``name``, checked before any model runs."""
    check_integer(o.get("batch_size"), "batch_size", minimum=1, optional=True)
    if "seed" in o:
        check_integer(o["seed"], "seed", minimum=0)
    if name == "smoothgrad":
        check_integer(o["samples"], "samples", minimum=1)
        check_number(o["noise_std"], "noise_std", unit="pixel units")
    if name == "ig":
        quadrature(o["rule"], o["steps"])
        if not isinstance(o["baseline"], Tensor) and o["baseline"] not in IG_BASELINES:
            raise ConfigError(f"must be one of {IG_BASELINES} or a tensor, got {o['baseline']!r}", field="baseline")
        if o["blur_sigma"] is not None and (isinstance(o["baseline"], Tensor) or o["baseline"] != "blur"):
            raise ConfigError("only with baseline 'blur'", field="blur_sigma")
        check_number(o["blur_sigma"], "blur_sigma", inclusive=False, optional=True, unit="pixels")
    if name == "gradcam" and o["layer"] is not None and not isinstance(o["layer"], str):
        raise ConfigError(f"must be a module name (str) or None, got {o['layer']!r}", field="layer")
