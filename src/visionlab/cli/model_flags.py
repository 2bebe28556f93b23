"""The flags that name the model an analysis command reads, and loading it with the data to run it on.

A model is a visionlab checkpoint (``--resume CKPT``: its architecture, weights, normalization, input size and
dataset are stored) or a classifier from outside visionlab:

* ``--model-arch NAME --weights FILE``: a torchvision classification architecture with a local state dict (its
  number of classes read from the weights; never downloaded);
* ``--model-factory FILE.py:FUNCTION [--weights FILE]``: your own ``nn.Module``, returned by a function called with
  no arguments;

each with ``--mean/--std`` (default: ImageNet's for ``--model-arch``, none for a factory) or ``--transforms-of``
a torchvision weights name, and ``--data`` for the images (``--image-size`` for file datasets). The network is
wrapped by :func:`visionlab.models.wrap_model`, so it takes pixels in [0, 1] and ε stays in pixel units; the
library (:mod:`visionlab.models.foreign`) raises the typed errors, :data:`~visionlab.cli.common.FIELD_FLAGS` names
their flags. Outputs go next to the checkpoint, the weights file or the factory file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionlab.cli.common import (
    CLIError,
    check_data_flags,
    check_options,
    eval_data,
    load_model_checkpoint,
)

if TYPE_CHECKING:  # torch is imported by the commands, not by `visionlab --help`
    import torch

__all__ = [
    "add_model_arguments",
    "check_model_flags",
    "foreign_flags",
    "load_foreign_model",
    "load_model",
    "model_file",
    "model_label",
]

# The options that describe a model from outside visionlab (argparse dest -> flag), refused with --resume.
FOREIGN_FLAGS = {
    "weights": "--weights", "mean": "--mean", "std": "--std", "transforms_of": "--transforms-of",
    "image_size": "--image-size",
}  # fmt: skip


def add_model_arguments(p: argparse.ArgumentParser, *, with_data: bool = False) -> None:
    """The group of flags naming a model that is not a visionlab checkpoint (the command's ``--resume``
    alternative); ``with_data`` adds ``--data`` for a command that has none of its own (``report``)."""
    g = p.add_argument_group("a model that is not a visionlab checkpoint (instead of --resume)")
    g.add_argument("--model-arch", metavar="NAME",
                   help="a torchvision classification architecture (torchvision.models.list_models()), e.g. "
                        "resnet18; needs --weights")  # fmt: skip
    g.add_argument("--model-factory", metavar="FILE.py:FUNCTION",
                   help="your own model: FUNCTION() in FILE.py, called with no arguments, returns the nn.Module "
                        "(normalized images in, logits out)")  # fmt: skip
    g.add_argument("--weights", metavar="FILE",
                   help="a local state dict (.pth, .pt or .safetensors) loaded strictly; required with "
                        "--model-arch (its classes are read from the classifier), optional with --model-factory; "
                        "never downloaded")  # fmt: skip
    g.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="per-channel mean the model was trained with (default: ImageNet's for --model-arch, 0 for "
                        "--model-factory)")  # fmt: skip
    g.add_argument(
        "--std",
        type=float,
        nargs="+",
        metavar="S",
        help="per-channel std, with --mean (default: ImageNet's for --model-arch, 1 for --model-factory)",
    )
    g.add_argument("--transforms-of", metavar="WEIGHTS",
                   help="mean and std of a torchvision weights enum's transforms, e.g. ResNet18_Weights.IMAGENET1K_V1 "
                        "(read from torchvision, nothing downloaded)")  # fmt: skip
    g.add_argument("--image-size", type=int, metavar="N",
                   help="file datasets (miniplaces, folder): the side images are resized and cropped to (default "
                        "128); the others have their own size")  # fmt: skip
    if with_data:
        g.add_argument("--data", help="the dataset to evaluate it on (required with --model-arch / --model-factory)")


def _resumes(args: argparse.Namespace) -> list[str]:
    """The checkpoints given with ``--resume`` (one, several, or none)."""
    resume = getattr(args, "resume", None)
    return [] if resume is None else list(resume) if isinstance(resume, list) else [resume]


def check_model_flags(args: argparse.Namespace) -> None:
    """Refuse, before anything is read, model flags that do not name exactly one kind of model or that the model
    would not read: ``--weights``/``--mean``/... with ``--resume``, ``--model-arch`` without ``--weights``,
    ``--transforms-of`` with ``--mean``/``--std``, a foreign model without ``--data``."""
    named = [
        flag
        for flag, given in (("--resume", _resumes(args)), ("--model-arch", args.model_arch),
                            ("--model-factory", args.model_factory))
        if given
    ]  # fmt: skip
    if not named:
        raise CLIError(
            "--resume: required: a visionlab checkpoint (or --model-arch NAME --weights FILE, or --model-factory "
            "FILE.py:FUNCTION)"
        )
    if len(named) > 1:
        raise CLIError(f"{named[1]}: not with {named[0]} (give one model)")
    if named[0] == "--resume":
        for name, flag in FOREIGN_FLAGS.items():
            if getattr(args, name) is not None:
                raise CLIError(
                    f"{flag}: only with --model-arch or --model-factory (a checkpoint stores its weights, "
                    "normalization and input size)"
                )
        return
    if args.model_arch is not None and args.weights is None:
        raise CLIError("--weights: required with --model-arch (a local state dict; visionlab never downloads weights)")
    if args.transforms_of is not None and (args.mean is not None or args.std is not None):
        raise CLIError("--transforms-of: not with --mean/--std (it gives them)")
    if args.data is None:
        raise CLIError(f"--data: required with {named[0]} (only a checkpoint stores its dataset)")
    if args.image_size is not None:
        check_options(args, "image_size")


def model_file(args: argparse.Namespace, resume: str | None) -> Path:
    """The file that stands for the model: the checkpoint, else the weights file, else the factory's file.
    Analysis outputs go next to it by default (``RUN/attack/`` for ``RUN/model_best.pth.tar``)."""
    if resume is not None:
        return Path(resume)
    if args.weights is not None:
        return Path(args.weights)
    return Path(args.model_factory.rpartition(":")[0])


def model_label(args: argparse.Namespace, resume: str | None) -> str:
    """The model's name in tables: the checkpoint's run directory, else the architecture or factory function."""
    if resume is not None:
        return Path(resume).parent.name or Path(resume).stem
    return args.model_arch or args.model_factory.rpartition(":")[2]


def foreign_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags naming the foreign model of ``args`` and its data, as a command line repeats them."""
    flags: list[str] = []
    for name, flag in (("model_arch", "--model-arch"), ("model_factory", "--model-factory"), ("weights", "--weights"),
                       ("mean", "--mean"), ("std", "--std"), ("transforms_of", "--transforms-of"), ("data", "--data"),
                       ("data_root", "--data-root"), ("image_size", "--image-size")):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            flags += [flag, *(str(v) for v in value)] if isinstance(value, list) else [flag, str(value)]
    return tuple(flags)


def _foreign_data(args: argparse.Namespace, *, strict: bool) -> Any:
    """The dataset of ``--data`` for a foreign model, file datasets at ``--image-size`` (default 128)."""
    from visionlab.data import FILE_KINDS, load_dataset, parse_spec

    if strict:
        check_data_flags(args.data, workers=getattr(args, "workers", None), data_root=args.data_root)
    kind, _ = parse_spec(args.data)
    if args.image_size is not None and kind not in FILE_KINDS:
        raise CLIError(f"--image-size: only for file datasets (miniplaces, folder); {kind} images have their own size")
    return load_dataset(
        args.data,
        data_root=args.data_root,
        image_size=args.image_size if kind in FILE_KINDS else None,
        check_images=not args.no_check_images,
    )


def load_foreign_model(
    args: argparse.Namespace, device: torch.device, *, strict: bool = True
) -> tuple[torch.nn.Module, Any]:
    """``(model, dataset bundle)`` of ``--model-arch`` / ``--model-factory``: the network built and its weights
    loaded first (a wrong name, file or weights fails before any data is read), then the data, then the network
    wrapped with its normalization for the data's channels, moved to ``device`` in eval mode, and run on one image
    to check it fits the data (output ``(1, classes)``)."""
    from visionlab.models import wrap_model
    from visionlab.models.foreign import (
        check_classifier,
        factory_network,
        resolve_normalization,
        torchvision_network,
        torchvision_normalization,
    )

    mean, std = (args.mean, args.std) if args.transforms_of is None else torchvision_normalization(args.transforms_of)
    if args.model_arch is not None:
        network, field, source = torchvision_network(args.model_arch, args.weights), "arch", args.model_arch
    else:
        network, field, source = factory_network(args.model_factory, args.weights), "factory", args.model_factory
    bundle = _foreign_data(args, strict=strict)
    mean, std = resolve_normalization(
        mean, std, bundle.in_channels, default="imagenet" if field == "arch" else "identity"
    )
    model = wrap_model(network, mean=mean, std=std).to(device).eval()
    check_classifier(model, bundle.val[0][0].to(device), bundle.num_classes, field=field, source=source)
    return model, bundle


def load_model(
    args: argparse.Namespace, resume: str | None, *, strict: bool = True
) -> tuple[dict[str, Any] | None, torch.nn.Module, Any, torch.device]:
    """``(checkpoint or None, model in eval mode on the device, dataset bundle, device)`` of the checkpoint
    ``resume``, or of the foreign model of ``args`` when ``resume`` is None. ``strict`` as for
    :func:`~visionlab.cli.common.eval_data`. Under torchrun, the device is this rank's."""
    from visionlab.engine import model_from_checkpoint
    from visionlab.runtime.distributed import init_distributed

    check_options(args, "batch_size", "device")
    if resume is None:
        _, device = init_distributed(args.device or "auto")
        return None, *load_foreign_model(args, device, strict=strict), device
    state = load_model_checkpoint(resume)
    _, device = init_distributed(args.device or "auto")
    bundle = eval_data(state, argparse.Namespace(**{**vars(args), "resume": resume}), strict=strict)
    return state, model_from_checkpoint(state, device).eval(), bundle, device
