#!/usr/bin/env python
"""The original course entry point, flag for flag: ``python main.py DATA [--resume CKPT] [-e|-a] [-v] ...``.

It translates the original flags (with the original defaults) into a ``visionlab train`` or ``visionlab eval``
command line, so there is one implementation behind both front ends. DATA is any visionlab dataset spec; a
bare path is auto-detected (MiniPlaces ``train.txt``/``val.txt``, ImageFolder, CIFAR-10, Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visionlab.cli import main as visionlab_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Scene recognition on MiniPlaces (visionlab's original front end)")
    p.add_argument("data", metavar="DATA", help="dataset: PATH (e.g. ../data), fashion-mnist, miniplaces:PATH, ...")
    p.add_argument("-j", "--workers", default=4, type=int, metavar="N", help="data loading workers (default: 4)")
    p.add_argument("--epochs", default=90, type=int, metavar="N", help="number of total epochs to run")
    p.add_argument("--warmup", default=5, type=int, metavar="N", help="number of epochs for warmup")
    p.add_argument("--clip-grad", default=1.0, type=float, metavar="N", help="max gradient norm (0 disables)")
    p.add_argument("--start-epoch", default=0, type=int, metavar="N", help="manual epoch number (restarts)")
    p.add_argument("-b", "--batch-size", default=256, type=int, metavar="N", help="mini-batch size (default: 256)")
    p.add_argument("--lr", "--learning-rate", default=0.1, type=float, metavar="LR", dest="lr")
    p.add_argument("--momentum", default=0.9, type=float, metavar="M")
    p.add_argument("--wd", "--weight-decay", default=1e-4, type=float, metavar="W", dest="weight_decay")
    p.add_argument("-p", "--print-freq", default=10, type=int, metavar="N", help="print frequency (default: 10)")
    p.add_argument("--resume", default="", type=str, metavar="PATH", help="path to latest checkpoint")
    p.add_argument("-e", "--evaluate", action="store_true", help="evaluate model on validation set")
    p.add_argument("-a", "--attack", action="store_true", help="evaluate model under adversarial attack")
    p.add_argument("-v", "--vis", action="store_true", help="visualize saliency maps / adversarial samples")
    p.add_argument("--use-custom-conv", action="store_true", help="use the unfold/fold convolution")
    p.add_argument("--use-vit", action="store_true", help="use the Vision Transformer")
    p.add_argument("--use-resnet18", action="store_true", help="fine-tune a pretrained ResNet-18")
    p.add_argument("--gpu", default=0, type=int, help="GPU id to use (negative: CPU)")
    p.add_argument("--tta", action="store_true", help="evaluate with horizontal-flip test-time augmentation")
    p.add_argument("--out", default=None, help="run directory (default runs/<model>-<dataset>-<time>)")
    return p


def _unavailable(flag: str, what: str) -> int:
    print(f"main.py: error: {flag}: {what} is not available yet in this version of visionlab", file=sys.stderr)
    return 2


def translate(args: argparse.Namespace) -> list[str]:
    """The ``visionlab`` argv equivalent to the original flags."""
    device = "cpu"
    if args.gpu >= 0:
        import torch

        device = f"cuda:{args.gpu}" if torch.cuda.is_available() else "cpu"
    if args.evaluate:
        if not args.resume:
            raise SystemExit("main.py: error: -e/--evaluate needs --resume CKPT (the model to evaluate)")
        argv = ["eval", "--resume", args.resume, "--data", args.data, "-b", str(args.batch_size)]
        argv += ["-j", str(args.workers), "--device", device] + (["--tta"] if args.tta else [])
        return argv
    model = "vit" if args.use_vit else "simplenet"
    argv = ["train", "--data", args.data, "--model", model, "--device", device]
    argv += ["-j", str(args.workers), "--epochs", str(args.epochs), "--warmup", str(args.warmup)]
    argv += ["--clip-grad", str(args.clip_grad), "--start-epoch", str(args.start_epoch)]
    argv += ["-b", str(args.batch_size), "--lr", str(args.lr), "--momentum", str(args.momentum)]
    argv += ["--wd", str(args.weight_decay), "-p", str(args.print_freq)]
    argv += ["--optimizer", "adamw" if args.use_vit else "sgd"]  # the original trains its ViT with AdamW
    if args.use_custom_conv:
        argv.append("--use-custom-conv")
    if args.resume:
        argv += ["--resume", args.resume]
    if args.out:
        argv += ["--out", args.out]
    if args.tta:
        argv.append("--tta")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.attack:
        return _unavailable("-a/--attack", "adversarial evaluation (PGD)")
    if args.vis:
        return _unavailable("-v/--vis", "visualization (saliency maps, adversarial samples)")
    if args.use_resnet18:
        return _unavailable("--use-resnet18", "ResNet-18 fine-tuning")
    if args.use_vit:
        from visionlab.models import list_models

        if "vit" not in list_models():
            return _unavailable("--use-vit", "the Vision Transformer")
    return visionlab_main(translate(args))


if __name__ == "__main__":
    sys.exit(main())
