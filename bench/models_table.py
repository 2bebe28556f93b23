"""Every registered model on Fashion-MNIST: parameters, multiply-adds, train images/s, test top-1/top-5, minutes.

Each model is trained by ``visionlab``'s ``Trainer`` on the 60000 training images and tested on the 10000 test
images after its last epoch (the figure a user gets, no selection on the test set). Hyperparameters: the model's
Fashion-MNIST recipe (:mod:`visionlab.recipes`) when it has one, else :data:`FALLBACK` below (SGD with one warmup
epoch then cosine, as ImprovedNet's runs in BENCHMARKS.md); ``--epochs`` overrides every model's epochs.

Columns:

* parameters — trainable parameters;
* multiply-adds — of one 1x28x28 forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (every
  convolution, matrix multiply and attention product; FLOPs / 2), native convolutions;
* train images/s — training images over the time spent in the training epochs (data loading, augmentation,
  forward, backward, optimizer step, logging; not the per-epoch validation);
* test top-1 / top-5 — after the last epoch, on all 10000 test images;
* minutes — the whole ``fit`` (training and per-epoch validation).

Full run (offline; the data under ``--data-root``, ``$VISIONLAB_DATA`` or ``./data``), one model at a time so a
long one can be run apart::

    python bench/models_table.py --data-root /work/main/data                      # every registered model
    python bench/models_table.py --data-root /work/main/data --models simplenet improved
    python bench/models_table.py --data-root /work/main/data --models resnet18 --device cuda
    python bench/models_table.py --quick --data-root /work/main/data              # smoke run: 512 images, 1 epoch

On a 2-core CPU the whole table takes hours: the ViT recipe alone is 30 epochs (~68 min, recipes.py), and
ResNet-18 (456 M multiply-adds per 28 px image with its 3x3/1 stem) trains at a few dozen images/s.
Prints the Markdown table, then, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from visionlab.data import load_dataset
from visionlab.engine import TrainConfig, Trainer
from visionlab.models import architecture_kwargs, build_model, list_models
from visionlab.recipes import recipe_for

# Models without a Fashion-MNIST recipe train with this (the settings of ImprovedNet's runs in BENCHMARKS.md).
FALLBACK: dict[str, Any] = dict(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, warmup=1.0, clip_grad=0.0, batch_size=128, workers=1,
    epochs=10,
)  # fmt: skip


class TimedTrainer(Trainer):
    """A :class:`Trainer` that adds up the wall time of its training epochs and the images they trained on."""

    train_seconds = 0.0
    train_images = 0

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        summary = super().train_one_epoch(epoch)
        self.train_seconds += time.perf_counter() - start
        n, batch = len(self.train_loader.dataset), self.cfg.batch_size
        self.train_images += (n // batch) * batch if n > batch else n  # the loader drops a ragged last batch
        return summary


def multiply_adds(name: str, model_kwargs: dict[str, Any] | None = None) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` of model ``name`` for one 1x28x28 image (its Fashion-MNIST build: the
    registry's 28 px defaults, overridden by the recipe's ``model_kwargs``)."""
    kwargs = architecture_kwargs(name, 28, **(model_kwargs or {}))
    model = build_model(name, num_classes=10, in_channels=1, image_size=28, **kwargs).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 28, 28))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, counter.get_total_flops() // 2


def settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    values = recipe_for(name, "fashion-mnist") or dict(FALLBACK)
    if args.epochs is not None:
        values["epochs"] = args.epochs
    if args.quick:
        values.update(epochs=1, limit_train=512, limit_val=256, batch_size=64, warmup=0.0)
    if args.amp:
        values.update(amp=True, channels_last=True)
    if args.device.startswith("cuda"):  # cuDNN picks its fastest kernels (bit-exact resume is a CPU property anyway)
        values.update(deterministic=False)
    return values


def run(name: str, bundle, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    values = settings(name, args)
    cfg = TrainConfig(data="fashion-mnist", model=name, device=args.device, progress=False, tensorboard=False,
                      out=str(out / name), **values)  # fmt: skip
    params, macs = multiply_adds(name, values.get("model_kwargs"))
    start = time.perf_counter()
    sink = io.StringIO() if not args.verbose else sys.stderr
    with contextlib.redirect_stderr(sink):
        trainer = TimedTrainer(cfg, bundle=bundle, callbacks=[])
        record = trainer.fit()
    minutes = (time.perf_counter() - start) / 60
    return {
        "model": name, "params": params, "macs": macs, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "train_images_per_s": trainer.train_images / trainer.train_seconds, "test_top1": record["val_top1"],
        "test_top5": record["val_top5"], "test_images": len(trainer.val_loader.dataset), "minutes": minutes,
        "device": str(trainer.device),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", help="where fashion-mnist is (default $VISIONLAB_DATA or ./data)")
    ap.add_argument("--models", nargs="+", help=f"default: all registered ({' '.join(sorted(list_models()))})")
    ap.add_argument("--epochs", type=int, help="override every model's epochs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="keep the run directories here (default: a temporary directory)")
    ap.add_argument("--amp", action="store_true", help="mixed precision and channels-last (GPU runs)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 512 training / 256 test images, 1 epoch")
    ap.add_argument("--verbose", action="store_true", help="show the trainer's per-epoch lines")
    args = ap.parse_args()
    names = args.models or sorted(list_models())
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        ap.error(f"unknown models {unknown}; registered: {', '.join(sorted(list_models()))}")

    bundle = load_dataset("fashion-mnist", data_root=args.data_root)
    rows = []
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for name in names:
            print(f"training {name} ...", file=sys.stderr, flush=True)
            rows.append(run(name, bundle, args, out))
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("| model | parameters | multiply-adds / image | train images/s | test top-1 % | test top-5 % | epochs | "
          "minutes |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e6:.1f} M | {r['train_images_per_s']:.0f} | "
              f"{r['test_top1']:.2f} | {r['test_top5']:.2f} | {r['epochs']} | {r['minutes']:.1f} |")  # fmt: skip
    print(f"Fashion-MNIST 1x28x28, {rows[0]['test_images']} test images, device {rows[0]['device']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}{', QUICK (smoke run)' if args.quick else ''}")  # fmt: skip
    print(json.dumps({"quick": args.quick, "rows": [
        {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}))  # fmt: skip


if __name__ == "__main__":
    main()
