#!/usr/bin/env python
"""The original course entry point, flag for flag: ``python main.py DATA [--resume CKPT] [-e|-a] [-v] ...``.

It translates the original flags (with the original defaults) into ``visionlab train``, ``eval``, ``attack``
(``-a``: the course's PGD attack; ``-a -v`` adds the image grids) or ``eval`` + ``saliency`` (``-e -v``) command
lines, so there is one implementation behind both front ends. DATA is any visionlab dataset spec; a
bare path is auto-detected (MiniPlaces ``train.txt``/``val.txt``, ImageFolder, CIFAR-10, Fashion-MNIST).

``--use-resnet18`` is ``--model resnet18 --pretrained imagenet``: torchvision's ImageNet weights from the torch
hub cache (never downloaded; a missing file is one error line saying where to put it), head replaced, with the
adaptations resnet18 makes for the data (a summed 1-channel stem for grayscale, the 3x3/1 stem below 64 px,
ImageNet normalization inside the model).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visionlab.cli import FIELD_FLAGS, CLIError, format_user_error
from visionlab.cli import main as visionlab_main
from visionlab.errors import ConfigError, UserError

# The original flags, with the original defaults.
_FLAGS: list[tuple[tuple[str, ...], dict]] = [
    (("-j", "--workers"), dict(default=4, type=int, metavar="N", help="data loading workers (default: min(4, CPUs))")),
    (("--epochs",), dict(default=90, type=int, metavar="N", help="number of total epochs to run")),
    (("--warmup",), dict(default=5, type=int, metavar="N", help="number of epochs for warmup")),
    (("--clip-grad",), dict(default=1.0, type=float, metavar="N", help="max gradient norm (0 disables)")),
    (("--start-epoch",), dict(default=0, type=int, metavar="N", help="manual epoch number (restarts)")),
    (("-b", "--batch-size"), dict(default=256, type=int, metavar="N", help="mini-batch size (default: 256)")),
    (("--lr", "--learning-rate"), dict(default=0.1, type=float, metavar="LR", dest="lr")),
    (("--momentum",), dict(default=0.9, type=float, metavar="M")),
    (("--wd", "--weight-decay"), dict(default=1e-4, type=float, metavar="W", dest="weight_decay")),
    (("-p", "--print-freq"), dict(default=10, type=int, metavar="N", help="print frequency (default: 10)")),
    (("--resume",), dict(default="", type=str, metavar="PATH", help="path to latest checkpoint")),
    (("-e", "--evaluate"), dict(action="store_true", help="evaluate model on validation set")),
    (("-a", "--attack"), dict(action="store_true", help="evaluate model under adversarial attack")),
    (("-v", "--vis"), dict(action="store_true", help="visualize saliency maps / adversarial samples")),
    (("--use-custom-conv",), dict(action="store_true", help="use the unfold/fold convolution")),
    (("--use-vit",), dict(action="store_true", help="use the Vision Transformer")),
    (("--use-resnet18",), dict(action="store_true", help="fine-tune torchvision's ImageNet ResNet-18 (hub cache)")),
    (("--gpu",), dict(default=0, type=int, help="GPU id to use (negative: CPU)")),
    (("--tta",), dict(action="store_true", help="evaluate with horizontal-flip test-time augmentation")),
    (("--out",), dict(default=None, help="run directory (default runs/<model>-<dataset>-<time>)")),
]


# The TrainConfig fields this front end sets through flags spelled differently from visionlab's (DATA is positional,
# the device comes from --gpu), for its error messages.
_FIELD_FLAGS = {**FIELD_FLAGS, "data": "DATA", "lr": "--lr/--learning-rate", "device": "--gpu", "gpu": "--gpu"}


# What -e and -a read besides DATA, --gpu and their own switch (the rest trains): any other flag given is refused
# with the reason, never passed on and ignored.
_MODE_READS = {"evaluate": ("resume", "batch_size", "workers", "tta", "vis", "out"),
               "attack": ("resume", "batch_size", "vis", "out")}  # fmt: skip
_TRAINING_ONLY = ("epochs", "warmup", "clip_grad", "start_epoch", "lr", "momentum", "weight_decay", "print_freq")
_MODEL_FLAGS = ("use_custom_conv", "use_vit", "use_resnet18")


def _flag_names() -> dict[str, str]:
    """dest -> the flag as the user spells it (``-j/--workers``, ``--lr/--learning-rate``)."""
    return {options.get("dest", names[-1].lstrip("-").replace("-", "_")): "/".join(names) for names, options in _FLAGS}


def _why_unread(dest: str) -> str:
    """Why -e or -a does not read the flag ``dest`` (one that :data:`_MODE_READS` leaves out)."""
    if dest in _TRAINING_ONLY:
        return "a training option"
    if dest in _MODEL_FLAGS:
        return "the checkpoint fixes the model"
    if dest == "workers":
        return "the attack loads its images in this process"
    if dest == "tta":
        return "the attack has no test-time augmentation"
    return "-e writes no files; --out takes the saliency maps of -e -v"  # out, the one flag -e reads with -v only


def check_given(args: argparse.Namespace, given: set[str]) -> None:
    """Refuse a flag in ``given`` that the mode ``args`` asks for would not read (``-e --epochs 5``, ``-a --tta``,
    ``-e --out DIR`` without ``-v``): one line naming the flag, the mode and why."""
    mode = "attack" if args.attack else "evaluate" if args.evaluate else None
    if mode is None:
        return
    names = _flag_names()
    reads = set(_MODE_READS[mode]) - ({"out"} if mode == "evaluate" and not args.vis else set())
    for dest in names:
        if dest in given and dest not in reads and dest not in ("evaluate", "attack", "gpu"):
            raise CLIError(f"{names[dest]}: not used with {names[mode]} ({_why_unread(dest)})")


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The original parser; with ``suppress_defaults`` the namespace holds only the flags actually given."""
    p = argparse.ArgumentParser(description="Scene recognition on MiniPlaces (visionlab's original front end)")
    p.add_argument("data", metavar="DATA", help="dataset: PATH (e.g. ../data), fashion-mnist, miniplaces:PATH, ...")
    for names, options in _FLAGS:
        p.add_argument(*names, **(dict(options, default=argparse.SUPPRESS) if suppress_defaults else options))
    return p


def _device(gpu: int) -> str:
    """``--gpu N``: ``cuda:N`` when CUDA is available, else the CPU (as the original); negative: the CPU. With CUDA,
    N must name a visible GPU."""
    if gpu < 0:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if gpu >= count:
        raise ConfigError(f"must be in [0, {count}) (the visible GPUs) or negative for the CPU, got {gpu}", field="gpu")
    return f"cuda:{gpu}"


def translate(args: argparse.Namespace, given: set[str] | None = None) -> list[str]:
    """The ``visionlab`` argv equivalent to the original flags.

    Only the flags in ``given`` (default: all) are passed on; the others come from visionlab's recipe for the
    (model, dataset) pair, else from the original defaults, which are also :class:`TrainConfig`'s. So
    ``main.py ../data`` trains with the original defaults and ``main.py ../data --use-vit`` with the ViT recipe.
    """
    given = set(vars(args)) if given is None else given

    def pairs(*items: tuple[str, str]) -> list[str]:
        return [x for flag, dest in items if dest in given for x in (flag, str(getattr(args, dest)))]

    device = _device(args.gpu)
    out = ["--out", args.out] if args.out else []
    if args.attack and args.evaluate:
        raise CLIError("-e/--evaluate and -a/--attack: choose one (-a prints the clean accuracy too)")
    if args.attack:  # the course's attack: PGD-10 towards the least-likely class in the 0.1-std ball
        if not args.resume:
            raise CLIError("-a/--attack needs --resume CKPT (the model to attack)")
        argv = ["attack", "--resume", args.resume, "--data", args.data, "--device", device, "--attack", "original"]
        return argv + pairs(("-b", "batch_size")) + (["--vis"] if args.vis else []) + out
    if args.evaluate:
        if not args.resume:
            raise CLIError("-e/--evaluate needs --resume CKPT (the model to evaluate)")
        argv = ["eval", "--resume", args.resume, "--data", args.data, "--device", device]
        return argv + pairs(("-b", "batch_size"), ("-j", "workers")) + (["--tta"] if args.tta else [])
    if args.vis:
        raise CLIError("-v/--vis needs -e (saliency maps of the evaluated model) or -a (adversarial samples)")
    if args.use_vit and args.use_resnet18:
        raise CLIError("--use-vit and --use-resnet18: choose one model")
    model = "vit" if args.use_vit else "resnet18" if args.use_resnet18 else "simplenet"
    argv = ["train", "--data", args.data, "--model", model, "--device", device]
    if args.use_resnet18 and not args.resume:  # resuming: the checkpoint holds the weights
        argv += ["--pretrained", "imagenet"]
    argv += pairs(("-j", "workers"), ("--epochs", "epochs"), ("--warmup", "warmup"), ("--clip-grad", "clip_grad"),
                  ("--start-epoch", "start_epoch"), ("-b", "batch_size"), ("--lr", "lr"), ("--momentum", "momentum"),
                  ("--wd", "weight_decay"), ("-p", "print_freq"))  # fmt: skip
    if args.use_custom_conv:
        argv.append("--use-custom-conv")
    if args.resume:
        argv += ["--resume", args.resume]
    if args.out:
        argv += ["--out", args.out]
    if args.tta:
        argv.append("--tta")
    return argv


def follow_ups(args: argparse.Namespace) -> list[list[str]]:
    """Commands run after :func:`translate`'s when it succeeds: ``-e -v`` draws the saliency maps (the original's
    ``Image/Image_Atten``) of the evaluated model."""
    if args.evaluate and args.vis and not args.attack:
        out = ["--out", args.out] if args.out else []
        return [["saliency", "--resume", args.resume, "--data", args.data, "--device", _device(args.gpu), *out]]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = set(vars(build_parser(suppress_defaults=True).parse_args(argv)))
    try:
        check_given(args, given)
        commands = [translate(args, given), *follow_ups(args)]
    except UserError as exc:
        print(f"main.py: error: {format_user_error(exc, _FIELD_FLAGS)}", file=sys.stderr)
        return 2
    for command in commands:
        status = visionlab_main(command, prog="main.py", flags=_FIELD_FLAGS)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
