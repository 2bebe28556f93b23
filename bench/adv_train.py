"""Adversarial-training cost: epoch time of FGSM-RS and PGD-K training ÷ clean training, same model and data.

Each objective trains its own copy of the model (same initial weights) with :meth:`Trainer.train_one_epoch` on
the same in-memory 1×28×28 data (a ``TensorDataset``), batch 128, SGD; rounds alternate the order (clean,
FGSM-RS, PGD, then the reverse) and the ratios are the medians of the per-round paired ratios. What an epoch
costs, in forward+backward passes: clean 1 (with the weight gradients), FGSM-RS 1 + 1 input-gradient pass,
PGD-K 1 + K input-gradient passes; an input-gradient pass skips the weight gradients, so it costs less than a
training one.

    python bench/adv_train.py                     # ImprovedNet (the adversarial-training model), 8 rounds
    python bench/adv_train.py --model simplenet   # the demo model
    python bench/adv_train.py --quick             # 3 rounds of 10 steps

Prints a table, then one JSON line ``{"fgsm_rs_ratio": ..., "pgd_ratio": ...}``; goals FGSM-RS ≤ 2.2×, PGD-3 ≤ 4.3×.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from _synthetic import epoch_runner, synthetic_bundle
from torch.utils.data import TensorDataset

from visionlab.engine import TrainConfig, Trainer


def make_epoch(
    data: TensorDataset, model_name: str, out: str, adv_train: str | None, steps: int, init: dict
) -> Callable[[], None]:
    """One training epoch over ``data`` with the objective ``adv_train`` (None: clean)."""
    bundle = synthetic_bundle(data, n_val=128)
    cfg = TrainConfig(
        data="synthetic", out=out, model=model_name, epochs=10**4, batch_size=128, workers=0, lr=0.05, warmup=0.0,
        print_freq=10**6, deterministic=False, progress=False, tensorboard=False, adv_train=adv_train, adv_eps=0.1,
        adv_steps=steps,
    )  # fmt: skip
    trainer = Trainer(cfg, bundle=bundle, callbacks=[])
    trainer.model.load_state_dict(init)
    return epoch_runner(trainer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="improved")
    ap.add_argument("--steps-per-epoch", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--pgd-steps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps_per_epoch, args.rounds = 10, 3
    torch.manual_seed(0)
    n = args.steps_per_epoch * 128
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    from visionlab.models import build_model

    init = copy.deepcopy(build_model(args.model, num_classes=10, in_channels=1, image_size=28).state_dict())
    names = ("clean", "fgsm-rs", f"pgd-{args.pgd_steps}")
    with contextlib.ExitStack() as stack:
        dirs = [stack.enter_context(tempfile.TemporaryDirectory()) for _ in names]
        epochs = {
            name: make_epoch(data, args.model, d, mode, args.pgd_steps, init)
            for name, d, mode in zip(names, dirs, (None, "fgsm-rs", "pgd"), strict=True)
        }
        for epoch in epochs.values():  # warm-up
            epoch()
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                epochs[name]()
                seconds[name].append(time.perf_counter() - start)
    report(seconds, names, n, args)


def report(seconds: dict[str, list[float]], names: tuple[str, ...], n: int, args: argparse.Namespace) -> None:
    clean = seconds["clean"]
    ratios = {name: statistics.median(s / c for s, c in zip(seconds[name], clean, strict=True)) for name in names}
    print(f"{'objective':<12}{'images/s (median)':>20}{'epoch time ÷ clean (median of paired)':>40}")
    for name in names:
        print(f"{name:<12}{n / statistics.median(seconds[name]):>20.1f}{ratios[name]:>40.3f}")
    print(f"{args.model} 1x28x28, batch 128, {args.steps_per_epoch} steps x {args.rounds} rounds, eps 0.1, "
          f"{torch.get_num_threads()} threads, cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(json.dumps({"model": args.model, "fgsm_rs_ratio": round(ratios["fgsm-rs"], 3),
                      "pgd_ratio": round(ratios[names[2]], 3), "pgd_steps": args.pgd_steps}))  # fmt: skip


if __name__ == "__main__":
    main()
