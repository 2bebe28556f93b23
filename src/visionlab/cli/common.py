"""What every command of the ``visionlab`` command line shares: the usage error, the field -> flag table that turns
a library error into ``FLAG: message``, the checks of options that share a training field's meaning, and reading
a visionlab checkpoint with the data to evaluate it on.

Imports nothing of the other ``visionlab.cli`` modules (they import it), and torch only inside functions, so
``visionlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from visionlab.errors import ConfigError, UserError

__all__ = [
    "FIELD_FLAGS",
    "WORKERS_HELP",
    "CLIError",
    "check_data_flags",
    "check_options",
    "eval_data",
    "format_user_error",
    "load_model_checkpoint",
    "reads_data_root",
]

# The one field -> flag table: a ConfigError about a TrainConfig field (or a command's option) is shown as
# "FLAG: message". Library messages speak of fields; only this table knows the flags. main.py overrides the few it
# spells differently.
FIELD_FLAGS: dict[str, str] = {
    "data": "--data", "data_root": "--data-root", "image_size": "--image-size", "limit_train": "--limit-train",
    "limit_val": "--limit-val", "workers": "-j/--workers", "check_images": "--no-check-images", "model": "--model",
    "cache_images": "--cache-images", "gpu_augment": "--gpu-augment", "gpu_decode": "--gpu-decode",
    "augment": "--augment", "shuffle_labels": "--shuffle-labels",
    "conv": "--use-custom-conv", "epochs": "--epochs", "start_epoch": "--start-epoch", "batch_size": "-b/--batch-size",
    "optimizer": "--optimizer", "lr": "--lr", "momentum": "--momentum", "weight_decay": "--wd/--weight-decay",
    "warmup": "--warmup", "clip_grad": "--clip-grad", "label_smoothing": "--label-smoothing", "tta": "--tta",
    "ema": "--ema", "seed": "--seed", "device": "--device", "amp": "--amp", "channels_last": "--channels-last",
    "deterministic": "--no-deterministic", "out": "--out",
    "print_freq": "-p/--print-freq", "tensorboard": "--no-tensorboard", "progress": "--no-progress",
    "quiet": "-q/--quiet", "resume": "--resume", "topk": "--topk", "split": "--split", "labels": "--labels",
    "adv_train": "--adv-train",
    "adv_eps": "--adv-eps", "adv_steps": "--adv-steps", "adv_step": "--adv-step", "adv_mix": "--adv-mix",
    "trades_beta": "--trades-beta", "select_by": "--select-by", "robust_val": "--robust-val",
    "noise_sigma": "--noise-sigma", "adv_eps_ramp": "--adv-eps-ramp", "swa_start": "--swa-start",
    "swa_every": "--swa-every", "recipe": "--recipe",
    "pretrained": "--pretrained", "freeze_backbone": "--freeze-backbone", "unfreeze_at": "--unfreeze-at",
    "head_lr_mult": "--head-lr-mult", "compile": "--compile", "sync_bn": "--sync-bn",
    # the analysis commands' options (visionlab.cli.analysis) and the settings of the objects they build
    "attack": "--attack", "eps": "--eps", "step": "--step", "steps": "--steps", "restarts": "--restarts",
    "norm": "--norm", "targeted": "--targeted", "num": "--num", "smoothgrad_samples": "--smoothgrad",
    "noise_std": "--noise-std", "at_eps": "--at-eps", "at_steps": "--at-steps",
    # a model that is not a visionlab checkpoint (visionlab.models.load_classifier's arguments)
    "arch": "--model-arch", "factory": "--model-factory", "weights": "--weights", "mean": "--mean", "std": "--std",
    "transforms_of": "--transforms-of",
    # data fetch
    "sha256": "--sha256",
}  # fmt: skip

WORKERS_HELP = (
    "data-loading worker processes of each process (default: min(4, the CPUs this process may use / torchrun's "
    "processes on this node)); not for fashion-mnist or cifar10, batched in memory"
)


class CLIError(UserError):
    """A command-line usage error (a missing path, flags that do not go together): one line, exit status 2."""


def format_user_error(exc: UserError, flags: Mapping[str, str] = FIELD_FLAGS) -> str:
    """The one line a user error prints: the message, led by the flag when a :class:`ConfigError` names a field
    that ``flags`` maps (``--label-smoothing: must be a number in [0, 1), got 2.0``)."""
    message = exc.message if isinstance(exc, ConfigError) else str(exc)
    if "Original Traceback" in message:  # re-raised by a DataLoader worker: keep the original message only
        message = message.rstrip().splitlines()[-1].partition(": ")[2] or message
    if isinstance(exc, ConfigError) and exc.field:
        return f"{flags[exc.field]}: {message}" if exc.field in flags else f"{exc.field}: {message}"
    return message


def reads_data_root(data: str) -> bool:
    """Whether the dataset spec ``data`` is looked up in the data root: only the plain Fashion-MNIST spec is
    (every other spec names its own folder)."""
    from visionlab.data import FASHION_MNIST_ALIASES

    return data in FASHION_MNIST_ALIASES


def check_data_flags(data: str, *, workers: int | None = None, data_root: str | None = None) -> None:
    """Refuse a data flag that the dataset ``data`` would not read: ``-j N`` (N > 0) for a dataset held in memory,
    whose batches are made in the process itself, and ``--data-root`` for a spec that names its own folder."""
    from visionlab.data import IN_MEMORY_KINDS, parse_spec

    if workers and parse_spec(data)[0] in IN_MEMORY_KINDS:
        raise CLIError(f"-j/--workers: {data} is held in memory and batched without worker processes (leave -j unset)")
    if data_root is not None and not reads_data_root(data):
        raise CLIError(f"--data-root: only --data fashion-mnist is looked up there; {data} names its own folder")


def check_options(args: argparse.Namespace, *names: str) -> None:
    """Check command options that share a TrainConfig field's meaning (``batch_size``, ``workers``, ...)."""
    from visionlab.engine.config import check_field

    for name in names:
        value = getattr(args, name)
        check_field(name, "auto" if name == "device" and value is None else value)


def load_model_checkpoint(path: str) -> dict[str, Any]:
    """:func:`~visionlab.engine.load_checkpoint`, also requiring the stored architecture (``model_args``)."""
    from visionlab.engine import CheckpointError, load_checkpoint

    state = load_checkpoint(path)
    model_args = state.get("model_args")
    if not isinstance(model_args, dict) or not {"name", "num_classes", "in_channels", "image_size"} <= set(model_args):
        raise CheckpointError(f"{path}: no model architecture stored (model_args); not a visionlab model checkpoint")
    return state


def eval_data(state: dict[str, Any], args: argparse.Namespace, *, strict: bool = True) -> Any:
    """The dataset to evaluate, its validation images fed to the model as it takes them.

    Data that does not fit the checkpoint (an RGB folder for a grayscale 28-px model, 28-px Fashion-MNIST for a
    32-px RGB model) is converted as ``predict`` converts any image: to the model's channels and size with the
    checkpoint's evaluation transform. A different number of classes cannot be converted and is an error.
    ``strict``: refuse ``-j`` / ``--data-root`` where this dataset would not read them (:func:`check_data_flags`);
    ``report``, which applies its flags to several runs, reads them where they apply.
    """
    from visionlab.data import FILE_KINDS, DatasetError, eval_transform, load_dataset, parse_spec

    stored, margs = state["config"], state["model_args"]
    data = args.data or stored["data"]
    if strict:
        check_data_flags(data, workers=getattr(args, "workers", None), data_root=args.data_root)
    kind, _ = parse_spec(data)
    bundle = load_dataset(
        data,
        data_root=args.data_root or stored.get("data_root"),
        image_size=margs["image_size"] if kind in FILE_KINDS else None,
        check_images=not args.no_check_images,
    )
    if bundle.num_classes != margs["num_classes"]:
        raise DatasetError(f"{data}: {bundle.num_classes} classes, but {args.resume} predicts {margs['num_classes']}")
    has, takes = (bundle.in_channels, bundle.image_size), (margs["in_channels"], margs["image_size"])
    if has != takes:
        print(
            f"[visionlab] note: {data} has {has[0]}-channel {has[1]}x{has[1]} images, the checkpoint takes "
            f"{takes[0]}-channel {takes[1]}x{takes[1]}: converting them (as predict does)",
            file=sys.stderr,
        )
        bundle.val.transform = eval_transform(state.get("recipe", "miniplaces"), takes[1], takes[0])
    return bundle
