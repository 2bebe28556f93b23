"""The sanity check and faithfulness curves, visionlab vs Quantus, on the same model, images, maps and settings.

* sanity: :func:`visionlab.explain.cascading_randomization` (Spearman and SSIM per layer) vs Quantus' ``MPRT``
  (Spearman only, its default), both cascading over the same layers, top down, with the same explainer (vanilla
  gradient);
* faithfulness: :func:`visionlab.explain.deletion_curve` vs Quantus' ``PixelFlipping`` (black baseline), the same
  pixels per step, on the same precomputed maps.

Each round times one call of each, in the opposite order every other round, and the table gives the median
images/s; the last line is JSON with the ratios (visionlab / Quantus, > 1 = visionlab faster) and the largest
disagreement of the two.

Both sanity checks are given the same precomputed maps of the trained model (Quantus' ``a_batch``, visionlab's
``reference``) and both call the explainer L + 1 times for L layers: once more on the trained model (Quantus'
"original" similarity, visionlab's stability rule) and once per step. "maps alone" times only those L + 1 calls,
on the channels-last model the check uses; ``sanity_ratio_ceiling`` (maps alone / MPRT) is the largest sanity
ratio any implementation of the check could reach with that explainer, however little else it did.

    .venv/bin/python bench/explain_checks.py [--model simplenet] [--num 500] [--steps 28] [--rounds 3]

NumPy's OpenBLAS is held to one thread (``OPENBLAS_NUM_THREADS=1``, set before NumPy loads): its threads spin
after each call and, on a machine with as few cores as PyTorch has intra-op threads, take them from PyTorch's, which
slowed both libraries (Quantus' MPRT ran at 96 images/s against 168 with one OpenBLAS thread, on 2 cores). Each
library runs at its best so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: see the module docstring

import numpy as np
import torch

from visionlab.explain import cascading_randomization, deletion_curve, parameterized_layers, saliency
from visionlab.models import build_model
from visionlab.runtime import channels_last_copy


def gradient(model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return saliency(model, images, target)


def quantus_gradient(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
    return gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="simplenet")
    parser.add_argument("--num", type=int, default=500, help="images (default 500, as the acceptance tables)")
    parser.add_argument("--steps", type=int, default=28, help="deletion steps (must divide 784)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    import quantus

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=10, in_channels=1, image_size=28).eval()
    images = torch.rand(args.num, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    images[:, :, 0, 0] = 0.0  # Quantus' "black" is each image's minimum: make it 0, visionlab's black
    target = model(images).argmax(1).detach()
    maps = gradient(model, images, target)
    x, y, a = images.numpy(), target.numpy(), maps.unsqueeze(1).numpy()
    per_step = 784 // args.steps

    def ours_sanity() -> object:
        return cascading_randomization(model, images, {"gradient": gradient}, target, batch_size=args.batch_size,
                                       reference={"gradient": maps})  # fmt: skip

    def quantus_sanity() -> object:
        metric = quantus.MPRT(disable_warnings=True, abs=True, normalise=True)
        return metric(model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=quantus_gradient, device="cpu",
                      batch_size=args.batch_size)  # fmt: skip

    def ours_deletion() -> object:
        return deletion_curve(model, images, maps, target, steps=args.steps, batch_size=args.batch_size)

    def quantus_deletion() -> object:
        metric = quantus.PixelFlipping(features_in_step=per_step, normalise=False, abs=False,
                                       perturb_baseline="black", disable_warnings=True)  # fmt: skip
        return metric(model=model, x_batch=x, y_batch=y, a_batch=a, softmax=True, device="cpu",
                      batch_size=args.batch_size)  # fmt: skip

    fast = channels_last_copy(model)
    calls = len(parameterized_layers(model)) + 1  # the trained model's maps again (stability), one per step

    def maps_alone() -> object:
        # The explainer calls the sanity check cannot do without, and nothing else: its speed limit.
        for _ in range(calls):
            for i in range(0, args.num, args.batch_size):
                gradient(fast, images[i : i + args.batch_size], target[i : i + args.batch_size])

    runs = {"visionlab sanity": ours_sanity, "Quantus MPRT": quantus_sanity, "maps alone": maps_alone,
            "visionlab deletion": ours_deletion, "Quantus PixelFlipping": quantus_deletion}  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, object] = {}
    for round_ in range(args.rounds):
        # Alternate the order: whichever runs right after Quantus' NumPy work pays for its thread pool winding down.
        for name, fn in runs.items() if round_ % 2 == 0 else reversed(runs.items()):
            start = time.perf_counter()
            outputs[name] = fn()
            rates[name].append(args.num / (time.perf_counter() - start))
    mprt_layers = [k for k in outputs["Quantus MPRT"] if k != "original"]
    ours = outputs["visionlab sanity"].steps
    curve_diff = float(np.abs(outputs["visionlab deletion"].probabilities[:, 1:].numpy()
                              - np.array(outputs["Quantus PixelFlipping"])).max())  # fmt: skip
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"{'check':<24}{'images/s (median)':>20}{'min':>10}{'max':>10}")
    for name, r in rates.items():
        print(f"{name:<24}{med[name]:>20.2f}{min(r):>10.2f}{max(r):>10.2f}")
    print(f"{args.model} 1x28x28, {args.num} images, {len(ours)} layers, deletion in {args.steps} steps of "
          f"{per_step} pixels, batch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, quantus {quantus.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"layers randomized: visionlab {len(ours)}, Quantus {len(mprt_layers)} (each seeds its own draws; "
          f"tests/explain/test_sanity.py checks equal values on equal models); "
          f"max |deletion ours - PixelFlipping| {curve_diff:.3g}")  # fmt: skip
    print(json.dumps({
        "model": args.model,
        "sanity_ratio": round(med["visionlab sanity"] / med["Quantus MPRT"], 4),
        "sanity_ratio_ceiling": round(med["maps alone"] / med["Quantus MPRT"], 4),
        "faithfulness_ratio": round(med["visionlab deletion"] / med["Quantus PixelFlipping"], 4),
        "sanity_images_per_s": round(med["visionlab sanity"], 2),
        "mprt_images_per_s": round(med["Quantus MPRT"], 2),
        "deletion_images_per_s": round(med["visionlab deletion"], 2),
        "pixel_flipping_images_per_s": round(med["Quantus PixelFlipping"], 2),
        "layers": len(ours),
        "quantus_layers": len(mprt_layers),
        "max_deletion_diff": curve_diff,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
