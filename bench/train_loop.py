"""Trainer overhead: images/s of ``visionlab``'s training epoch vs a bare PyTorch loop, with a stable verdict.

Every loop runs the same architecture (SimpleNet), batch size, in-memory data (a ``TensorDataset`` of float
pixels), optimizer (SGD + momentum + weight decay), per-iteration warmup-cosine schedule and gradient
clipping, so the difference is what the trainer adds per step: top-1/top-5 counts on the device, a loss
``.item()`` and a metrics.jsonl / TensorBoard record every ``print_freq`` steps, the progress bar. Two trainer
variants tell those costs apart: ``full`` (progress bar + TensorBoard, as ``visionlab train`` runs) and
``quiet`` (neither).

One round times every loop for ``--steps`` steps, in an order that alternates between rounds (ABC, CBA, ...)
so slow drifts of the machine cancel. The figure is the median over rounds of the *paired* ratio
trainer/bare of the same round, with its interquartile range and a 90% bootstrap interval of that median: a
single round's ratio on a 2-core VM scatters by +-5-8%, more than the 3% margin, so the verdict ("within 3%")
is given only when the whole interval is above 0.97.

    python bench/train_loop.py            # 15 rounds x 40 steps, SimpleNet 1x28x28, batch 128 (~2 min)
    python bench/train_loop.py --quick    # 5 rounds x 20 steps, < 40 s
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/train_loop.py   # AVX2 code paths

Prints a table, then one JSON line ``{"ratio": median paired trainer/bare (full trainer), ...}``; the goal is
``ratio >= 0.97``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from _synthetic import epoch_runner, synthetic_bundle
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionlab.engine import TrainConfig, Trainer, WarmupCosine
from visionlab.models import build_model


def bare_loop(data: TensorDataset, batch_size: int) -> Callable[[], None]:
    """One epoch of the plainest correct PyTorch loop over ``data``."""
    model = build_model("simplenet", num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = WarmupCosine(opt, 40, 10**6)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    criterion = nn.CrossEntropyLoss()

    def epoch() -> None:
        model.train()
        for images, target in loader:
            loss = criterion(model(images), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()

    return epoch


def trainer_loop(data: TensorDataset, batch_size: int, out: str, *, quiet: bool) -> Callable[[], None]:
    """One epoch of :meth:`Trainer.train_one_epoch` (stderr swallowed so the bar costs what it costs to draw)."""
    bundle = synthetic_bundle(data, n_val=256)
    cfg = TrainConfig(
        data="synthetic", out=out, epochs=10**4, batch_size=batch_size, workers=0, lr=0.01, warmup=1.0,
        print_freq=10, deterministic=False, progress=not quiet, tensorboard=not quiet,
    )  # fmt: skip
    trainer = Trainer(cfg, bundle=bundle, callbacks=[])
    return epoch_runner(trainer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 5
    torch.manual_seed(0)
    n = args.steps * args.batch_size
    data = TensorDataset(torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,)))
    with tempfile.TemporaryDirectory() as full_dir, tempfile.TemporaryDirectory() as quiet_dir:
        loops = {
            "trainer (full)": trainer_loop(data, args.batch_size, full_dir, quiet=False),
            "trainer (quiet)": trainer_loop(data, args.batch_size, quiet_dir, quiet=True),
            "bare PyTorch loop": bare_loop(data, args.batch_size),
        }
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for loop in loops.values():  # warm-up: allocator, oneDNN primitive caches
            loop()
        names = list(loops)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                loops[name]()
                rates[name].append(n / (time.perf_counter() - start))
    report(rates, args)


def _bootstrap_median_ci(values: list[float], level: float = 0.9, draws: int = 4000) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (fixed seed, so the report is reproducible)."""
    gen = torch.Generator().manual_seed(0)
    data = torch.tensor(values, dtype=torch.float64)
    picks = torch.randint(len(values), (draws, len(values)), generator=gen)
    medians = data[picks].median(dim=1).values.sort().values
    lo, hi = int((1 - level) / 2 * draws), int((1 + level) / 2 * draws) - 1
    return float(medians[lo]), float(medians[hi])


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    bare = rates["bare PyTorch loop"]
    print(f"{'loop':<20}{'images/s median':>16}{'q1':>9}{'q3':>9}{'paired ratio median':>21}{'q1':>8}{'q3':>8}")
    summary: dict[str, float] = {}
    for name, values in rates.items():
        _, med, _ = _quartiles(values)
        paired = [v / b for v, b in zip(values, bare, strict=True)]
        pq1, pmed, pq3 = _quartiles(paired)
        q1, _, q3 = _quartiles(values)
        print(f"{name:<20}{med:>16.1f}{q1:>9.1f}{q3:>9.1f}{pmed:>21.4f}{pq1:>8.4f}{pq3:>8.4f}")
        summary[name] = pmed
        summary[name + " iqr"] = pq3 - pq1
        summary[name + " ci"] = _bootstrap_median_ci(paired)
    print(f"SimpleNet, 1x28x28, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds (order "
          f"alternating), {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    lo, hi = summary["trainer (full) ci"]
    verdict = "within 3%" if lo >= 0.97 else ("slower by > 3%" if hi < 0.97 else "undecided: run more rounds")
    print(f"trainer (full) / bare: median {summary['trainer (full)']:.4f}, 90% bootstrap interval of the median "
          f"[{lo:.4f}, {hi:.4f}]: {verdict}")  # fmt: skip
    print(json.dumps({
        "ratio": round(summary["trainer (full)"], 4),
        "ratio_ci90": [round(lo, 4), round(hi, 4)],
        "ratio_iqr": round(summary["trainer (full) iqr"], 4),
        "quiet_ratio": round(summary["trainer (quiet)"], 4),
        "bare_images_per_s": round(statistics.median(bare), 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
