"""``visionlab eval`` and ``visionlab predict``: the accuracy of a model on a dataset split, and the top-k classes
of images.

``eval`` takes a visionlab checkpoint (``--resume``) or a model from outside visionlab (``--model-arch`` /
``--model-factory``, :mod:`visionlab.cli.model_flags`); ``predict`` a checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from visionlab.cli.common import (
    WORKERS_HELP,
    CLIError,
    check_options,
    eval_data,
    load_model_checkpoint,
)
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_foreign_model

__all__ = ["add_evaluate_commands", "cmd_eval", "cmd_predict"]


def add_evaluate_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval`` and ``predict`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("eval", help="evaluate a checkpoint on the validation/test split")
    _add_eval_arguments(p)
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--json", action="store_true", help='print one JSON line {"top1", "top5", "n", "loss"}')
    add_model_arguments(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of images")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or directories")
    p.add_argument("--resume", required=True, metavar="CKPT")
    p.add_argument("--data", help="predict a dataset split instead of IMAGE paths")
    p.add_argument("--split", choices=("test", "val"), help="with --data: the split to predict (default test)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("-b", "--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_predict)


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", metavar="CKPT", help="checkpoint to load (best or last); or a model of the group below")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    p.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("-j", "--workers", type=int, help=WORKERS_HELP)
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")


def cmd_eval(args: argparse.Namespace) -> int:
    """Top-1/top-5 and loss of the model over the validation split (under torchrun, summed over the ranks)."""
    from visionlab.engine import evaluate, limit, make_loader, model_from_checkpoint
    from visionlab.runtime.distributed import default_workers, init_distributed, shard_dataset

    check_options(args, "batch_size", "limit_val", "device")
    if args.workers is not None:
        check_options(args, "workers")
    check_model_flags(args)
    state = load_model_checkpoint(args.resume) if args.resume is not None else None
    dist, device = init_distributed(args.device or "auto")  # under torchrun each rank evaluates its share
    if state is None:
        model, bundle = load_foreign_model(args, device)
    else:
        bundle = eval_data(state, args)
    shard = shard_dataset(limit(bundle.val, args.limit_val), dist)
    workers = default_workers() if args.workers is None else args.workers
    loader = make_loader(shard, args.batch_size, train=False, workers=workers, device=device)
    if state is not None:
        model = model_from_checkpoint(state, device)
    stats = evaluate(model, loader, device, tta=args.tta, progress=not args.no_progress and dist.is_main, dist=dist)
    if not dist.is_main:
        return 0
    if args.json:
        print(json.dumps({"top1": stats["top1"], "top5": stats["top5"], "n": stats["n"], "loss": stats["loss"]}))
    else:
        print(f"* Acc@1 {stats['top1']:.3f} Acc@5 {stats['top5']:.3f}")
    return 0


def _image_paths(items: Sequence[str]) -> list[Path]:
    """The image files of ``items``: files as given, directories searched recursively (sorted)."""
    from visionlab.data.datasets import IMAGE_EXTENSIONS

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            paths.append(path)
        else:
            raise CLIError(f"{item}: no such image file or directory")
    if not paths:
        raise CLIError("predict: no images given (IMAGE paths, directories, or --data SPEC for its test split)")
    return paths


def _predict_paths(args: argparse.Namespace) -> list[Path]:
    """The image files to classify: the IMAGE arguments, or the image files of a dataset split."""
    from visionlab.data import FILE_KINDS, load_dataset, parse_spec

    if not args.data:
        if args.split is not None:
            raise CLIError("--split: only with --data SPEC (IMAGE paths are predicted as given)")
        return _image_paths(args.images)
    if args.images:
        raise CLIError("predict: give IMAGE paths or --data SPEC, not both")
    kind, _ = parse_spec(args.data)
    if kind not in FILE_KINDS:
        raise CLIError(f"--data {args.data}: {kind} keeps its images in arrays, not files; use eval")
    bundle = load_dataset(args.data)
    split = bundle.val if args.split == "val" else bundle.test
    if split is None:
        raise CLIError(f"--data {args.data}: no test split (test.txt or images/test/); try --split val")
    return [e.path for e in split.entries]


def cmd_predict(args: argparse.Namespace) -> int:
    """Print the top-k classes of each image (IMAGE paths, or a dataset split), as text or JSON lines."""
    import torch

    from visionlab.data import DatasetError, eval_transform
    from visionlab.data.decode import ImageDecodeError, read_image
    from visionlab.engine import model_from_checkpoint, select_device
    from visionlab.engine.config import Range

    check_options(args, "batch_size", "device")
    Range(1, integer=True).check("topk", args.topk)
    state = load_model_checkpoint(args.resume)
    device = select_device(args.device or "auto")
    model = model_from_checkpoint(state, device).eval()
    names = state.get("class_names") or [str(i) for i in range(state["model_args"]["num_classes"])]
    margs = state["model_args"]
    paths = _predict_paths(args)
    transform = eval_transform(state.get("recipe", "miniplaces"), margs["image_size"], margs["in_channels"])
    k = min(args.topk, len(names))
    for start in range(0, len(paths), args.batch_size):
        batch_paths = paths[start : start + args.batch_size]
        images = []
        for path in batch_paths:
            try:  # the decoder the datasets use, so predict sees the pixels eval sees
                images.append(transform(read_image(path)))
            except ImageDecodeError as exc:
                raise DatasetError(f"{path}: cannot decode image ({exc})") from exc
        with torch.no_grad():
            probs = model(torch.stack(images).to(device)).float().softmax(dim=1)
        top = probs.topk(k, dim=1)
        for path, p, idx in zip(batch_paths, top.values.tolist(), top.indices.tolist(), strict=True):
            if args.json:
                print(json.dumps({"image": str(path), "top": [{"class": names[i], "index": i, "prob": q}
                                                              for q, i in zip(p, idx, strict=True)]}))  # fmt: skip
            else:
                print(str(path))
                for q, i in zip(p, idx, strict=True):
                    print(f"  {100 * q:6.2f}%  {names[i]}")
    return 0
