"""Attack speed: images/s of visionlab's PGD vs ``torchattacks.PGD`` on the same model and data.

PGD-10, L∞, ε = 0.1 (pixel units), step 0.01, no random start, on SimpleNet built from the registry for
1×28×28 input and 10 classes, briefly fitted on synthetic images whose class is a bright row (so its input
gradients are those of a trained network, not of random weights). The attacked batches are random [0, 1] images
labelled with the model's own predictions (clean accuracy 100%, so every example needs attacking). The rounds
alternate (ours, torchattacks, ours with early stop, ours in NCHW, then the reverse order) and the medians are
compared; the results of ours and torchattacks are compared on every batch.

    python bench/attack.py            # 7 rounds of 4 batches of 128, SimpleNet
    python bench/attack.py --model improved    # the batch-norm residual CNN
    python bench/attack.py --quick    # 3 rounds of 1 batch: checks that it works, numbers are rough

Prints a table, then one JSON line {"ratio": ours / torchattacks, "early_stop_ratio": ..., ...}; the goal is
ratio >= 1.2.

Both differentiate with respect to the input alone (input-gradient-only convolution backward), so the loops'
own overhead is small next to the convolutions. What visionlab gains comes from the layout: on the CPU its
attacks run with the images and the model's 4-d weights in NHWC (channels-last, swapped in and back, the model
left as it was; the strides spelled out for one input channel, where PyTorch's own channels-last keeps NCHW ones),
where oneDNN's convolutions and pools are faster; the "NCHW" row is the same attack without that, the
loop alone. The kernels differ, so float32 results differ in the last bits, and where a gradient component is
within rounding of zero its sign — hence a whole step — can differ: the table gives the fraction of pixels that
differ and both robust accuracies. Early stop saves more (frozen examples leave the batch) but returns
different, first-fooling examples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from visionlab.models import build_model
from visionlab.robustness import PGD

EPS, STEP, STEPS = 0.1, 0.01, 10


def fitted_model(name: str, steps: int, batch_size: int, seed: int = 0) -> nn.Module:
    """Model ``name`` fitted for ``steps`` AdamW steps on noise images with a bright row at ``2 * label + 4``."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        y = torch.randint(0, 10, (batch_size,))
        x = 0.25 * torch.rand(batch_size, 1, 28, 28)
        x[torch.arange(batch_size), 0, 2 * y + 4, :] = 1.0
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def timed(attack: Callable, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, list[torch.Tensor]]:
    """Images/s of ``attack`` over ``batches`` and its outputs."""
    outs, n = [], 0
    start = time.perf_counter()
    for x, y in batches:
        outs.append(attack(x, y))
        n += y.shape[0]
    return n / (time.perf_counter() - start), outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=4, help="batches per timed round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fit-steps", type=int, default=60)
    ap.add_argument("--model", default="simplenet", help="registered model, 1x28x28 (default simplenet)")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.rounds, args.fit_steps = 1, 3, 20
    model = fitted_model(args.model, args.fit_steps, args.batch_size)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.batches):
        x = torch.rand(args.batch_size, 1, 28, 28, generator=gen)
        with torch.no_grad():
            batches.append((x, model(x).argmax(dim=1)))

    ours = PGD(model, EPS, STEP, steps=STEPS, random_start=False)
    early = PGD(model, EPS, STEP, steps=STEPS, random_start=False, early_stop=True)
    nchw = PGD(model, EPS, STEP, steps=STEPS, random_start=False, channels_last=False)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)
    contenders = {"visionlab PGD": ours, "torchattacks PGD": theirs, "visionlab PGD early stop": early,
                  "visionlab PGD (NCHW)": nchw}  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, list[torch.Tensor]] = {}
    for attack in contenders.values():  # warm-up (one-time kernel and allocator set-up)
        attack(batches[0][0][:16], batches[0][1][:16])
    names = list(contenders)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rate, outputs[name] = timed(contenders[name], batches)
            rates[name].append(rate)

    pairs = list(zip(outputs["visionlab PGD"], outputs["torchattacks PGD"], strict=True))
    diff = max((a - b).abs().max().item() for a, b in pairs)
    differing = sum(((a - b).abs() > 1e-6).sum().item() for a, b in pairs) / sum(a.numel() for a, _ in pairs)
    nchw_diff = max(
        (a - b).abs().max().item()
        for a, b in zip(outputs["visionlab PGD (NCHW)"], outputs["torchattacks PGD"], strict=True)
    )
    with torch.no_grad():
        robust = {
            name: sum((model(a).argmax(1) == y).sum().item() for a, (_, y) in zip(outs, batches, strict=True))
            / (args.batches * args.batch_size)
            for name, outs in outputs.items()
        }
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"{'attack':<28}{'images/s (median)':>20}{'min':>10}{'max':>10}{'robust top-1':>15}")
    for name, r in rates.items():
        print(f"{name:<28}{med[name]:>20.1f}{min(r):>10.1f}{max(r):>10.1f}{100 * robust[name]:>14.1f}%")
    print(f"PGD-{STEPS} L∞ eps={EPS} step={STEP}, {args.model} 1x28x28, batch {args.batch_size}, "
          f"{args.batches} batches x {args.rounds} rounds, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"ours vs torchattacks: max |diff| {diff:.3g}, pixels differing by > 1e-6: {100 * differing:.3f}% "
          f"(NCHW ours vs torchattacks: max |diff| {nchw_diff:.3g})")  # fmt: skip
    print(json.dumps({
        "model": args.model,
        "ratio": round(med["visionlab PGD"] / med["torchattacks PGD"], 4),
        "early_stop_ratio": round(med["visionlab PGD early stop"] / med["torchattacks PGD"], 4),
        "ours_images_per_s": round(med["visionlab PGD"], 1),
        "torchattacks_images_per_s": round(med["torchattacks PGD"], 1),
        "early_stop_images_per_s": round(med["visionlab PGD early stop"], 1),
        "nchw_ratio": round(med["visionlab PGD (NCHW)"] / med["torchattacks PGD"], 4),
        "max_abs_diff": diff,
        "pixels_differing": differing,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
