"""Transfer on Fashion-MNIST: pretrain on classes 0-4, then learn classes 5-9 from 100 labelled images per class.

Stage 1 trains the network on every training image of classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat:
30000 images) as a 5-class problem. Stage 2 learns classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), relabelled
0-4, from the same 500 training images (100 per class, a seeded draw) in three ways, same architecture:

* fine-tuned    — from the stage-1 network (``--pretrained`` its checkpoint: backbone kept, a new 5-class head),
                  every layer trained, the head at ``--head-lr-mult`` times the lr;
* linear probe  — the stage-1 backbone frozen (``--freeze-backbone``: weights and batch-norm statistics fixed),
                  only the new head trained;
* from scratch  — random initialisation, every layer trained.

Each is tested on all 5000 test images of classes 5-9 after its last epoch (no selection on the test images: the
per-epoch validation runs on the first ``--val-images`` of them only to show the curve). Stage 2 is repeated for
every ``--seeds`` entry (another 500-image draw and another initialisation of the head / the scratch network);
the table gives mean ± standard deviation over seeds and each seed's figure. Everything goes through
``visionlab``'s ``Trainer`` and the fine-tuning flags, so the experiment exercises what a user runs.

The model: ``improved`` (ImprovedNet at 28 px) by default. ResNet-18 (3x3/1 stem at 28 px, ``--model resnet18``)
costs 456 M multiply-adds per image against 37 M; a rough check on the 2-core development VM (shared, one thread
each, not a benchmark) trained about 24 images/s against about 300, i.e. ~10 min per 30000-image pretraining
epoch for ResNet-18 against under a minute, so on a CPU the experiment uses ``improved`` and ResNet-18 is the GPU
variant.

Full runs (offline: Fashion-MNIST under ``--data-root``, ``$VISIONLAB_DATA`` or ``./data``)::

    python bench/transfer.py --data-root /work/main/data                 # improved, CPU: under an hour
    python bench/transfer.py --data-root /work/main/data --model resnet18 --device cuda
    python bench/transfer.py --quick --data-root /work/main/data         # smoke run: tiny subsets, 1 epoch each

Prints a Markdown table, then, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from visionlab.data import FASHION_MNIST_CLASSES, DataBundle, TensorImageDataset, load_dataset
from visionlab.engine import CHECKPOINT, TrainConfig, Trainer, evaluate, make_loader, select_device

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
ARMS = {"fine_tuned": "fine-tuned (all layers)", "linear_probe": "linear probe (frozen backbone)",
        "scratch": "from scratch"}  # fmt: skip


def class_subset(
    data: TensorImageDataset, classes: tuple[int, ...], per_class: int | None = None, seed: int = 0
) -> TensorImageDataset:
    """The images of ``classes`` relabelled ``0..len(classes)-1``, in their original order; with ``per_class``,
    that many of each class drawn at random (``seed``). Keeps the dataset's transform."""
    keep = []
    gen = torch.Generator().manual_seed(seed)
    for new, old in enumerate(classes):
        idx = (data.labels == old).nonzero().flatten()
        if per_class is not None:
            if per_class > len(idx):
                raise ValueError(f"class {old} has {len(idx)} images, {per_class} asked")
            idx = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
        keep.append((idx, new))
    order = torch.cat([idx for idx, _ in keep]).sort().values
    relabel = torch.full((int(data.labels.max()) + 1,), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))
    return TensorImageDataset(data.images[order], relabel[data.labels[order]], data.transform)


def _first(data: TensorImageDataset, n: int | None) -> TensorImageDataset:
    if n is None or n >= len(data):
        return data
    return TensorImageDataset(data.images[:n], data.labels[:n], data.transform)


def subset_bundle(full: DataBundle, classes: tuple[int, ...], train: TensorImageDataset, test: TensorImageDataset):
    """A :class:`DataBundle` of ``classes`` (relabelled) the trainer accepts as it is."""
    return DataBundle(
        kind=f"fashion-mnist-{classes[0]}-{classes[-1]}", root=full.root, train=train, val=test,
        num_classes=len(classes), in_channels=full.in_channels, image_size=full.image_size, mean=full.mean,
        std=full.std, class_names=[FASHION_MNIST_CLASSES[c] for c in classes], recipe=full.recipe,
    )  # fmt: skip


@dataclass
class Result:
    top1: float
    minutes: float


def train(cfg: TrainConfig, bundle: DataBundle, test: TensorImageDataset, quiet: bool) -> tuple[Trainer, Result]:
    """Fit ``cfg`` on ``bundle``, then test the last epoch's model on ``test`` (all of it)."""
    start = time.perf_counter()
    sink = io.StringIO() if quiet else sys.stderr
    with contextlib.redirect_stderr(sink):
        trainer = Trainer(cfg, bundle=bundle, callbacks=[])
        trainer.fit()
    loader = make_loader(test, 500, train=False, workers=0, device=trainer.device)
    stats = evaluate(trainer.model, loader, trainer.device)
    return trainer, Result(stats["top1"], (time.perf_counter() - start) / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", help="where fashion-mnist is (default $VISIONLAB_DATA or ./data)")
    ap.add_argument("--model", default="improved", help="registry model (default improved; resnet18 on a GPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="stage-2 repetitions (default 0 1 2)")
    ap.add_argument("--per-class", type=int, default=100, help="labelled images per target class (default 100)")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--pretrain-lr", type=float, default=0.1, help="SGD, batch 128, wd 5e-4, 1 warmup epoch")
    ap.add_argument("--epochs", type=int, default=40, help="stage-2 epochs of 500 images, batch 50 (default 40)")
    ap.add_argument("--finetune-lr", type=float, default=0.01)
    ap.add_argument("--head-lr-mult", type=float, default=10.0, help="fine-tuning: head lr / backbone lr")
    ap.add_argument("--probe-lr", type=float, default=0.1)
    ap.add_argument("--scratch-lr", type=float, default=0.1)
    ap.add_argument("--val-images", type=int, default=1000, help="test images validated each epoch (curve only)")
    ap.add_argument("-j", "--workers", type=int, default=1)
    ap.add_argument("--out", help="keep the run directories here (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 600 pretraining images, 10 per class, 1 epoch")
    ap.add_argument("--verbose", action="store_true", help="show the trainer's per-epoch lines")
    args = ap.parse_args()
    limit_source = limit_test = None
    if args.quick:
        args.seeds, args.per_class, args.pretrain_epochs, args.epochs = args.seeds[:1], 10, 1, 1
        limit_source, limit_test, args.val_images = 600, 500, 100

    full = load_dataset("fashion-mnist", data_root=args.data_root)
    source_train = _first(class_subset(full.train, SOURCE), limit_source)
    source_test = _first(class_subset(full.val, SOURCE), limit_test)
    target_test = _first(class_subset(full.val, TARGET), limit_test)
    device = select_device(args.device)

    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        common = dict(
            data="fashion-mnist", model=args.model, optimizer="sgd", momentum=0.9, weight_decay=5e-4, clip_grad=0.0,
            workers=args.workers, device=str(device), progress=False, tensorboard=False, print_freq=10**6,
        )  # fmt: skip
        pre_cfg = TrainConfig(**common, epochs=args.pretrain_epochs, batch_size=128, lr=args.pretrain_lr, warmup=1.0,
                              limit_val=args.val_images, out=str(out / "pretrain"), seed=0)  # fmt: skip
        print(f"stage 1: {args.model} on classes 0-4, {len(source_train)} images, {args.pretrain_epochs} epoch(s)",
              file=sys.stderr, flush=True)  # fmt: skip
        _, pre = train(pre_cfg, subset_bundle(full, SOURCE, source_train, source_test), source_test, not args.verbose)
        weights = str(out / "pretrain" / CHECKPOINT)

        arms = {
            "fine_tuned": dict(pretrained=weights, lr=args.finetune_lr, head_lr_mult=args.head_lr_mult),
            "linear_probe": dict(pretrained=weights, lr=args.probe_lr, freeze_backbone=True),
            "scratch": dict(lr=args.scratch_lr),
        }
        results: dict[str, list[Result]] = {key: [] for key in arms}
        for seed in args.seeds:
            train_set = class_subset(full.train, TARGET, per_class=args.per_class, seed=seed)
            bundle = subset_bundle(full, TARGET, train_set, target_test)
            for key, values in arms.items():
                print(f"stage 2, seed {seed}: {ARMS[key]} on {len(train_set)} images of classes 5-9", file=sys.stderr,
                      flush=True)  # fmt: skip
                cfg = TrainConfig(**common, **values, epochs=args.epochs, batch_size=min(50, len(train_set)),
                                  warmup=min(2.0, args.epochs - 1.0), limit_val=args.val_images, seed=seed,
                                  out=str(out / f"seed{seed}-{key}"))  # fmt: skip
                results[key].append(train(cfg, bundle, target_test, not args.verbose)[1])
    report(args, pre, results, len(source_train), len(source_test), len(target_test), str(device))


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(
    args: argparse.Namespace, pre: Result, results: dict[str, list[Result]], n_source: int, n_source_test: int,
    n_test: int, device: str,
) -> None:  # fmt: skip
    seeds = " ".join(str(s) for s in args.seeds)
    print(f"| classes 5-9 from {args.per_class} images per class ({args.model}) | test top-1 % (mean ± sd over seeds "
          f"{seeds}) | per seed | minutes per run |")  # fmt: skip
    print("|---|---|---|---|")
    summary: dict[str, Any] = {}
    for key, runs in results.items():
        mean, sd = _mean_sd([r.top1 for r in runs])
        per_seed = " ".join(f"{r.top1:.2f}" for r in runs)
        minutes = statistics.mean(r.minutes for r in runs)
        print(f"| {ARMS[key]} | {mean:.2f} ± {sd:.2f} | {per_seed} | {minutes:.2f} |")
        summary[key] = {"top1_mean": round(mean, 2), "top1_sd": round(sd, 2), "top1": [round(r.top1, 2) for r in runs],
                        "minutes_mean": round(minutes, 3)}  # fmt: skip
    print(
        f"stage 1 ({n_source} training images of classes 0-4, {args.pretrain_epochs} epoch(s)): test top-1 "
        f"{pre.top1:.2f}% on {n_source_test} test images of classes 0-4, {pre.minutes:.2f} min. Stage 2: "
        f"{args.epochs} epoch(s), tested on {n_test} test images of classes 5-9. {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}{', QUICK (smoke run)' if args.quick else ''}"
    )
    print(json.dumps({
        "model": args.model, "quick": args.quick, "seeds": args.seeds, "per_class": args.per_class,
        "pretrain": {"epochs": args.pretrain_epochs, "images": n_source, "top1": round(pre.top1, 2),
                     "minutes": round(pre.minutes, 3)},
        "epochs": args.epochs, "test_images": n_test, **summary,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
