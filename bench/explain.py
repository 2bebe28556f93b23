"""Explanation speed: images/s of each visionlab method vs the field's libraries on the same model and batch.

* saliency: visionlab ``saliency`` vs captum ``Saliency`` (of the log-softmax, the same map);
* smoothgrad: visionlab SmoothGrad vs captum ``NoiseTunnel(Saliency)`` (``smoothgrad``, same samples and std);
* ig: visionlab ``integrated_gradients`` vs captum ``IntegratedGradients`` (same rule and steps, all
  interpolated images in one pass each: ``internal_batch_size`` = visionlab's ``batch_size``);
* gradcam: visionlab ``gradcam`` vs captum ``LayerGradCam`` + ``LayerAttribution.interpolate(bilinear)`` and vs
  pytorch-grad-cam's ``GradCAM`` (the same layer: the model's last feature map).

The model is a registry model (SimpleNet by default, random weights: speed does not depend on training) on random
[0, 1] images. The rounds alternate the implementations (each method: ours, then each oracle, then the reverse
order in the next round) and the medians are compared.

    python bench/explain.py               # 5 rounds, batch 64, SimpleNet 1x28x28
    python bench/explain.py --model improved
    python bench/explain.py --quick       # 2 rounds of batch 4, 4 steps/samples: checks that it works

Prints a table, then one JSON line ``{"saliency": ours / captum, "smoothgrad": ..., "ig": ..., "gradcam_captum":
..., "gradcam_pytorch_grad_cam": ..., ...}``; the goal (BENCHMARKS.md) is every ratio >= 1.0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from visionlab.explain import gradcam, gradcam_layers, integrated_gradients, saliency
from visionlab.models import build_model

SIZES = {"simplenet": (1, 28), "improved": (1, 28), "resnet18": (3, 32), "vit": (3, 32)}


def implementations(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int, samples: int
) -> dict[str, dict[str, Callable[[], object]]]:
    """Per method, ``{implementation: a call explaining x for target}``; ours first."""
    layer_name = gradcam_layers(model, x)[-1]
    layer = dict(model.named_modules())[layer_name]
    side = tuple(x.shape[-2:])
    log_softmax = Saliency(lambda inp: F.log_softmax(model(inp), dim=1))
    generator = torch.Generator().manual_seed(0)
    n = len(x)
    return {
        "saliency": {
            "visionlab": lambda: saliency(model, x, target),
            "captum": lambda: log_softmax.attribute(x, target=target, abs=True).amax(dim=1),
        },
        "smoothgrad": {
            "visionlab": lambda: saliency(
                model, x, target, smoothgrad_samples=samples, noise_std=0.1, generator=generator
            ),
            "captum": lambda: NoiseTunnel(log_softmax).attribute(
                x, nt_type="smoothgrad", nt_samples=samples, stdevs=0.1, target=target, abs=True
            ),
        },
        "ig": {
            "visionlab": lambda: integrated_gradients(model, x, target, steps=steps, batch_size=steps * n),
            "captum": lambda: IntegratedGradients(model).attribute(
                x, target=target, n_steps=steps, method="gausslegendre", internal_batch_size=steps * n
            ),
        },
        "gradcam": {
            "visionlab": lambda: gradcam(model, x, target, layer=layer_name),
            "captum": lambda: LayerAttribution.interpolate(
                LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True), side, "bilinear"
            ),
            "pytorch_grad_cam": lambda: _grad_cam(model, layer, x, target),
        },
    }


def _grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> object:
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])


def timed(call: Callable[[], object], n: int) -> float:
    """Images/s of one call explaining ``n`` images."""
    start = time.perf_counter()
    call()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", choices=sorted(SIZES), default="simplenet")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50, help="IG nodes (Gauss-Legendre, captum's default)")
    ap.add_argument("--samples", type=int, default=20, help="SmoothGrad samples")
    args = ap.parse_args()
    if args.quick:
        args.batch_size, args.rounds, args.steps, args.samples = 4, 2, 4, 4
    channels, side = SIZES[args.model]
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=10, in_channels=channels, image_size=side).eval()
    x = torch.rand(args.batch_size, channels, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = model(x).argmax(1)
    calls = implementations(model, x, target, args.steps, args.samples)
    speeds: dict[tuple[str, str], list[float]] = {(m, i): [] for m, impls in calls.items() for i in impls}
    for r in range(args.rounds):
        for method, impls in calls.items():
            order = list(impls) if r % 2 == 0 else list(reversed(impls))
            for name in order:
                speeds[method, name].append(timed(impls[name], len(x)))
    med = {key: statistics.median(v) for key, v in speeds.items()}
    print(f"{'method':<12}{'implementation':<20}{'images/s (median)':>20}{'min':>10}{'max':>10}")
    for (method, name), values in speeds.items():
        print(f"{method:<12}{name:<20}{med[method, name]:>20.1f}{min(values):>10.1f}{max(values):>10.1f}")
    print(f"{args.model} {channels}x{side}x{side}, batch {args.batch_size}, IG {args.steps} Gauss-Legendre nodes, "
          f"SmoothGrad {args.samples} samples, {args.rounds} rounds, {torch.get_num_threads()} threads")  # fmt: skip
    ratios = {
        "saliency": med["saliency", "visionlab"] / med["saliency", "captum"],
        "smoothgrad": med["smoothgrad", "visionlab"] / med["smoothgrad", "captum"],
        "ig": med["ig", "visionlab"] / med["ig", "captum"],
        "gradcam_captum": med["gradcam", "visionlab"] / med["gradcam", "captum"],
        "gradcam_pytorch_grad_cam": med["gradcam", "visionlab"] / med["gradcam", "pytorch_grad_cam"],
    }
    print(json.dumps({**{k: round(v, 3) for k, v in ratios.items()}, "model": args.model,
                      "batch_size": args.batch_size, "steps": args.steps, "samples": args.samples,
                      "rounds": args.rounds, "threads": torch.get_num_threads()}))  # fmt: skip


if __name__ == "__main__":
    main()
