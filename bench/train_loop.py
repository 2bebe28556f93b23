"""Trainer overhead: images/s of ``visionlab``'s training epoch vs a bare PyTorch loop.

Both run the same model (SimpleNet), batch size, in-memory data (a ``TensorDataset`` of float pixels),
optimizer (SGD + momentum), per-iteration warmup-cosine schedule and gradient clipping, so the difference is
what the trainer adds: top-1/top-5 bookkeeping on the device, the progress bar, step records in metrics.jsonl
and TensorBoard. Epochs alternate (trainer, bare, trainer, ...) and the medians are compared.

    python bench/train_loop.py            # Fashion-MNIST size: SimpleNet, 1x28x28, batch 128
    python bench/train_loop.py --quick    # fewer rounds, < 60 s

Prints a table, then one JSON line {"ratio": trainer images/s / bare images/s, ...}; the goal is >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionlab.data import DataBundle
from visionlab.engine import TrainConfig, Trainer, WarmupCosine
from visionlab.models import build_model


def bare_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, sched, clip: float) -> float:
    criterion = nn.CrossEntropyLoss()
    model.train()
    n, start = 0, time.perf_counter()
    for images, target in loader:
        loss = criterion(model(images), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        n += target.shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 3
    torch.manual_seed(0)
    n = args.steps * args.batch_size
    x, y = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
    data = TensorDataset(x, y)
    bundle = DataBundle(
        kind="synthetic", root="", train=data, val=TensorDataset(x[:256], y[:256]), num_classes=10, in_channels=1,
        image_size=28, mean=(0.5,), std=(0.5,), class_names=[str(i) for i in range(10)], recipe="small",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            data="synthetic", out=out, epochs=1000, batch_size=args.batch_size, workers=0, lr=0.01, warmup=1.0,
            print_freq=10, deterministic=False,
        )  # fmt: skip
        trainer = Trainer(cfg, bundle=bundle)
        model = build_model("simplenet", num_classes=10, in_channels=1, image_size=28)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        sched = WarmupCosine(opt, args.steps, 1000 * args.steps)
        loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
        ours, bare = [], []
        bare_epoch(model, loader, opt, sched, 1.0)  # warm-up both
        trainer.train_one_epoch(0)
        for r in range(args.rounds):
            start = time.perf_counter()
            trainer.train_one_epoch(r + 1)
            ours.append(n / (time.perf_counter() - start))
            bare.append(bare_epoch(model, loader, opt, sched, 1.0))
        trainer.log.close()
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"{'loop':<22}{'images/s (median)':>20}{'min':>10}{'max':>10}")
    print(f"{'visionlab Trainer':<22}{o:>20.1f}{min(ours):>10.1f}{max(ours):>10.1f}")
    print(f"{'bare PyTorch loop':<22}{b:>20.1f}{min(bare):>10.1f}{max(bare):>10.1f}")
    print(f"SimpleNet, 1x28x28, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print(json.dumps({"ratio": round(o / b, 4), "trainer_images_per_s": round(o, 1), "bare_images_per_s": round(b, 1)}))


if __name__ == "__main__":
    main()
