"""Scale-out figures: training images/s with N processes (DDP over gloo) vs one, and the speed switches.

Part ``ddp`` (default): the real engine (``visionlab.engine.Trainer``) trains ``--model`` on the first
``--limit-train`` Fashion-MNIST images with a global batch of ``--batch-size``, once as one process using every
core (``torch.set_num_threads(cores)``) and once as ``--nproc`` processes joined by gloo, each with
``cores / nproc`` threads — the honest comparison on one machine: the same cores, split differently. Each
configuration trains ``--epochs`` epochs and the figure is the images/s of the last one (the first pays for
warm-up). Rounds alternate (1, N, N, 1, ...) and the medians are reported.

Part ``switches``: images/s of the training epoch for each model with ``--amp``, ``--channels-last`` and
``--compile`` (inductor) against the plain run, one process, on ``--device`` (a GPU when one is there: these
are the figures the README's "when each switch pays" table quotes).

    python bench/ddp.py --data-root data                       # DDP 2 vs 1 process, SimpleNet, this CPU
    python bench/ddp.py --data-root data --model improved
    python bench/ddp.py --data-root data --part switches --device cuda --models simplenet vit resnet18
    python bench/ddp.py --quick --data-root data               # smoke run

Prints a table, then one JSON line: ``{"ddp_ratio": N-process images/s / 1-process images/s, ...}`` (part ddp)
or ``{"speedups": {model: {switch: ratio}}}`` (part switches).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from visionlab.data import load_dataset
from visionlab.engine import TrainConfig, Trainer
from visionlab.runtime.distributed import DistContext


class LastEpochTimer(Trainer):
    """A :class:`Trainer` that records the wall time and images of each training epoch."""

    epoch_rates: list[float]

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.dist.barrier()
        start = time.perf_counter()
        summary = super().train_one_epoch(epoch)
        self.dist.barrier()
        seconds = time.perf_counter() - start
        images = len(self.train_loader) * self.cfg.batch_size  # global images (drop_last)
        self.epoch_rates = [*getattr(self, "epoch_rates", []), images / seconds]
        return summary


def _config(args: argparse.Namespace, out: str, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        data="fashion-mnist", data_root=args.data_root, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, optimizer="sgd", lr=0.05, warmup=0.0, workers=0, limit_train=args.limit_train,
        limit_val=args.limit_val, device=args.device, out=out, tensorboard=False, progress=False, quiet=True,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _rank(rank: int, world: int, port: int, threads: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(threads)
    with contextlib.redirect_stderr(io.StringIO()):
        trainer = LastEpochTimer(_config(args, out), callbacks=[])
        trainer.fit()
    if rank == 0:
        Path(out, "rate.json").write_text(json.dumps(trainer.epoch_rates))
    torch.distributed.destroy_process_group()


def ddp_rate(world: int, args: argparse.Namespace, cores: int) -> float:
    """Images/s of the last epoch, ``world`` processes sharing ``cores`` threads."""
    with tempfile.TemporaryDirectory() as out:
        if world == 1:
            torch.set_num_threads(cores)
            with contextlib.redirect_stderr(io.StringIO()):
                trainer = LastEpochTimer(_config(args, out), callbacks=[], dist=DistContext())
                trainer.fit()
            return trainer.epoch_rates[-1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_rank, args=(world, port, max(1, cores // world), args, out), nprocs=world, join=True)
        return json.loads(Path(out, "rate.json").read_text())[-1]


def part_ddp(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    load_dataset("fashion-mnist", data_root=args.data_root)  # fetched and verified before any timing
    rates: dict[int, list[float]] = {1: [], args.nproc: []}
    for r in range(args.rounds):
        for world in (1, args.nproc) if r % 2 == 0 else (args.nproc, 1):
            rates[world].append(ddp_rate(world, args, cores))
            print(f"round {r + 1}: {world} process(es): {rates[world][-1]:.0f} images/s", file=sys.stderr)
    one, many = statistics.median(rates[1]), statistics.median(rates[args.nproc])
    print(f"{'set-up':<40} {'images/s (median)':>18} {'min':>8} {'max':>8}")
    for world, label in (
        (1, f"1 process x {cores} threads"),
        (args.nproc, f"{args.nproc} processes x {max(1, cores // args.nproc)} threads (gloo)"),
    ):
        row = rates[world]
        print(f"{label:<40} {statistics.median(row):>18.0f} {min(row):>8.0f} {max(row):>8.0f}")
    print(f"{args.model}, Fashion-MNIST {args.limit_train} images, global batch {args.batch_size}, epoch "
          f"{args.epochs} of {args.epochs} timed, {args.rounds} rounds, torch {torch.__version__}, "
          f"{cores} cores, cpu capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(json.dumps({"model": args.model, "nproc": args.nproc, "ddp_ratio": round(many / one, 4),
                      "one_process_images_per_s": round(one, 1), "ddp_images_per_s": round(many, 1)}))  # fmt: skip


SWITCHES: dict[str, dict[str, Any]] = {
    "plain": {}, "amp": {"amp": True}, "channels_last": {"channels_last": True}, "compile": {"compile": "inductor"},
}  # fmt: skip


def part_switches(args: argparse.Namespace) -> None:
    bundle = load_dataset("fashion-mnist", data_root=args.data_root)
    speedups: dict[str, dict[str, float]] = {}
    print(f"{'model':<12} {'switch':<14} {'images/s':>10} {'x plain':>8}")
    for model in args.models:
        base = None
        for name in ["plain", *(s for s in args.switches if s != "plain")]:  # plain first: the ratios' base
            with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
                cfg = _config(args, out, model=model, **SWITCHES[name])
                trainer = LastEpochTimer(cfg, bundle=bundle, callbacks=[], dist=DistContext())
                trainer.fit()
            rate = trainer.epoch_rates[-1]
            base = base or rate
            speedups.setdefault(model, {})[name] = round(rate / base, 3)
            print(f"{model:<12} {name:<14} {rate:>10.0f} {rate / base:>8.2f}", flush=True)
    print(f"device {args.device}, Fashion-MNIST {args.limit_train} images, batch {args.batch_size}, last of "
          f"{args.epochs} epochs timed, torch {torch.__version__}")  # fmt: skip
    print(json.dumps({"device": args.device, "speedups": speedups}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("ddp", "switches"), default="ddp")
    ap.add_argument("--data-root", help="where fashion-mnist is (default $VISIONLAB_DATA or ./data)")
    ap.add_argument("--model", default="simplenet", help="part ddp: the model (default simplenet)")
    ap.add_argument("--models", nargs="+", default=["simplenet", "vit", "resnet18"], help="part switches")
    ap.add_argument("--switches", nargs="+", choices=list(SWITCHES), default=list(SWITCHES),
                    help="part switches: which (default all; plain always, first)")  # fmt: skip
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit-train", type=int, default=12800)
    ap.add_argument("--limit-val", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1,024 images")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.limit_train, args.epochs = 1, 1024, 2
    part_ddp(args) if args.part == "ddp" else part_switches(args)


if __name__ == "__main__":
    main()
