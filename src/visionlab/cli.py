"""``visionlab`` command line: train, eval, predict, compare, data fetch, models.

Flags left unset fall back to the recipe for the (model, dataset) pair (:mod:`visionlab.recipes`), then to the
original course defaults (:class:`visionlab.engine.TrainConfig`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "not_available", "train_config_from_args"]

# argparse dest -> TrainConfig field, for the training flags that map one to one.
_TRAIN_FIELDS = (
    "data", "data_root", "image_size", "limit_train", "limit_val", "workers", "model", "epochs", "start_epoch",
    "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup", "clip_grad", "label_smoothing", "tta",
    "seed", "device", "amp", "channels_last", "out", "print_freq",
)  # fmt: skip
# Fields a full resume may change: they do not alter the arithmetic of the run.
_RUNTIME_FIELDS = ("epochs", "workers", "out", "print_freq", "device", "data_root", "progress", "tensorboard")


class CLIError(Exception):
    """A user error: printed as ``visionlab: error: ...`` with exit status 2."""


def not_available(flag: str, what: str) -> CLIError:
    return CLIError(f"{flag}: {what} is not available yet in this version of visionlab")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Training flags (no defaults here: None means 'from the recipe or TrainConfig')."""
    d = p.add_argument_group("data")
    d.add_argument("--data", help="fashion-mnist (default) | miniplaces:PATH | folder:PATH | cifar10:PATH | PATH")
    d.add_argument("--data-root", help="where fashion-mnist is kept (default $VISIONLAB_DATA or ./data)")
    d.add_argument("--image-size", type=int, help="model input side for file datasets (default 128)")
    d.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    d.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    d.add_argument("-j", "--workers", type=int, help="data-loading processes (default 4)")
    d.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="registered model name (visionlab models); default simplenet")
    m.add_argument("--use-custom-conv", action="store_true", help="build every conv with the unfold/fold conv")
    o = p.add_argument_group("optimization")
    o.add_argument("--epochs", type=int, help="total epochs (default 90)")
    o.add_argument("--start-epoch", type=int, help="epoch to start at, for manual restarts (default 0)")
    o.add_argument("-b", "--batch-size", type=int, help="mini-batch size (default 256)")
    o.add_argument("--optimizer", choices=("sgd", "adamw"), help="default sgd")
    o.add_argument("--lr", type=float, help="peak learning rate (default 0.1)")
    o.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    o.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, help="weight decay (default 1e-4)")
    o.add_argument("--warmup", type=float, help="linear warmup epochs before cosine decay (default 5)")
    o.add_argument("--clip-grad", type=float, help="max gradient L2 norm, 0 disables (default 1.0)")
    o.add_argument("--label-smoothing", type=float, help="default 0")
    r = p.add_argument_group("run")
    r.add_argument("--resume", metavar="CKPT", help="checkpoint.pth.tar (exact resume) or model_best (fine-tune)")
    r.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<dataset>-<time>)")
    r.add_argument("--seed", type=int, help="default 0")
    r.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    r.add_argument("--amp", action="store_true", default=None, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    r.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    r.add_argument("--tta", action="store_true", default=None, help="evaluate with horizontal-flip averaging")
    r.add_argument("-p", "--print-freq", type=int, help="log every N steps (default 10)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard events")


def train_config_from_args(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Resolve flags + recipe + defaults into a TrainConfig; returns ``(config, resume_path)``."""
    from visionlab.data import parse_spec
    from visionlab.engine import TrainConfig, load_checkpoint
    from visionlab.recipes import recipe_for

    given = {f: getattr(args, f) for f in _TRAIN_FIELDS if getattr(args, f, None) is not None}
    if getattr(args, "use_custom_conv", False):
        given["conv"] = "custom"
    if getattr(args, "no_check_images", False):
        given["check_images"] = False
    if getattr(args, "no_progress", False):
        given["progress"] = False
    if getattr(args, "no_tensorboard", False):
        given["tensorboard"] = False

    resume = getattr(args, "resume", None)
    if resume:
        state = load_checkpoint(resume)
        if "optimizer" in state:  # exact resume: the stored run, with run-time fields overridable
            values = dict(state["config"])
            # Where the run was first written is no instruction: it resumes next to the checkpoint (which may
            # have been moved or copied) unless --out says otherwise.
            values["out"] = None
            for key, value in given.items():
                if key in _RUNTIME_FIELDS:
                    values[key] = value
                elif values.get(key) != value:
                    print(
                        f"[visionlab] note: ignoring --{key.replace('_', '-')} {value}: an exact resume keeps the "
                        f"checkpoint's {values.get(key)!r} (fine-tune from model_best.pth.tar to change it)",
                        file=sys.stderr,
                    )
            return TrainConfig.from_dict(values), resume
        # fine-tuning: the architecture comes from the checkpoint, the rest from the flags
        given.setdefault("model", state["model_args"]["name"])
        given.setdefault("conv", state["model_args"].get("conv", "native"))
        given.setdefault("data", state["config"]["data"])

    data = given.get("data", TrainConfig.data)
    kind, _ = parse_spec(data) if data != "fashion-mnist" else ("fashion-mnist", "")
    values = recipe_for(given.get("model", TrainConfig.model), kind)
    values.update(given)
    return TrainConfig(**values), resume


# ------------------------------------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from visionlab.engine import Trainer
    from visionlab.models import list_models

    cfg, resume = train_config_from_args(args)
    if cfg.model not in list_models():
        raise CLIError(f"--model {cfg.model}: unknown model; available: {', '.join(list_models())}")
    result = Trainer(cfg, resume=resume).fit()
    if "val_top1" in result:
        print(f"* Acc@1 {result['val_top1']:.3f} Acc@5 {result['val_top5']:.3f} (best Acc@1 {result['best_top1']:.3f})")
    else:
        print(f"nothing to train: the run had already reached epoch {cfg.epochs}")
    print(f"run directory: {result['run_dir']}")
    return 0


def _eval_loader(state: dict[str, Any], args: argparse.Namespace):
    from visionlab.data import load_dataset
    from visionlab.engine import make_loader, select_device
    from visionlab.engine.trainer import _limit

    stored = state["config"]
    data = args.data or stored["data"]
    bundle = load_dataset(
        data,
        data_root=args.data_root or stored.get("data_root"),
        image_size=state["model_args"]["image_size"] if not data.startswith(("fashion-mnist", "cifar10")) else None,
        check_images=not args.no_check_images,
    )
    device = select_device(args.device or "auto")
    loader = make_loader(
        _limit(bundle.val, args.limit_val), args.batch_size, train=False, workers=args.workers, device=device
    )
    return bundle, loader, device


def cmd_eval(args: argparse.Namespace) -> int:
    from visionlab.engine import evaluate, load_checkpoint, model_from_checkpoint

    state = load_checkpoint(args.resume)
    bundle, loader, device = _eval_loader(state, args)
    if bundle.num_classes != state["model_args"]["num_classes"]:
        raise CLIError(
            f"--data {args.data}: {bundle.num_classes} classes, but {args.resume} predicts "
            f"{state['model_args']['num_classes']}"
        )
    model = model_from_checkpoint(state, device)
    stats = evaluate(model, loader, device, tta=args.tta, progress=not args.no_progress)
    if args.json:
        print(json.dumps({"top1": stats["top1"], "top5": stats["top5"], "n": stats["n"], "loss": stats["loss"]}))
    else:
        print(f"* Acc@1 {stats['top1']:.3f} Acc@5 {stats['top5']:.3f}")
    return 0


def _image_paths(items: Sequence[str]) -> list[Path]:
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


def cmd_predict(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image, UnidentifiedImageError

    from visionlab.data import DatasetError, eval_transform, load_dataset
    from visionlab.engine import load_checkpoint, model_from_checkpoint, select_device

    state = load_checkpoint(args.resume)
    device = select_device(args.device or "auto")
    model = model_from_checkpoint(state, device).eval()
    names = state.get("class_names") or [str(i) for i in range(state["model_args"]["num_classes"])]
    margs = state["model_args"]
    if args.data:
        bundle = load_dataset(args.data, image_size=margs["image_size"] if margs["image_size"] != 28 else None)
        split = bundle.test if args.split == "test" else bundle.val
        if split is None:
            raise CLIError(f"--data {args.data}: no test split (test.txt or images/test/)")
        paths = [e.path for e in split.entries]
    else:
        paths = _image_paths(args.images)
    transform = eval_transform(state.get("recipe", "miniplaces"), margs["image_size"], margs["in_channels"])
    k = min(args.topk, len(names))
    for start in range(0, len(paths), args.batch_size):
        batch_paths = paths[start : start + args.batch_size]
        images = []
        for path in batch_paths:
            try:
                with Image.open(path) as img:
                    images.append(transform(img.convert("RGB")))
            except (OSError, UnidentifiedImageError) as exc:
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


def cmd_compare(args: argparse.Namespace) -> int:
    from visionlab.report import plot_runs

    for run in args.runs:
        if not (Path(run) / "metrics.jsonl").is_file():
            raise CLIError(f"{run}: not a run directory (no metrics.jsonl)")
    out = plot_runs(args.runs, args.output, labels=args.labels)
    print(f"wrote {out}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from visionlab.data import fetch_fashion_mnist

    if args.dataset != "fashion-mnist":
        raise CLIError(f"data fetch {args.dataset}: only fashion-mnist can be fetched (the others you provide)")
    print(fetch_fashion_mnist(args.root, force=args.force))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from visionlab.models import list_models

    for name, summary in list_models().items():
        print(f"{name:12s} {summary}")
    return 0


# ------------------------------------------------------------------------------------------------ parser
def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", required=True, metavar="CKPT", help="checkpoint to load (best or last)")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept")
    p.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("-j", "--workers", type=int, default=2)
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionlab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (and evaluate it every epoch)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the validation/test split")
    _add_eval_arguments(p)
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--json", action="store_true", help='print one JSON line {"top1", "top5", "n", "loss"}')
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of images")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or directories")
    p.add_argument("--resume", required=True, metavar="CKPT")
    p.add_argument("--data", help="predict a dataset split instead of IMAGE paths")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("-b", "--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="one figure of several runs' loss, top-1/top-5 and lr curves")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default="compare.png")
    p.add_argument("--labels", nargs="+", help="legend labels, one per run (default: directory names)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("data", help="dataset management")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch", help="fetch and verify a dataset (fashion-mnist)")
    f.add_argument("dataset", choices=("fashion-mnist",))
    f.add_argument("--root", help="data root (default $VISIONLAB_DATA or ./data)")
    f.add_argument("--force", action="store_true", help="fetch again even if a verified copy exists")
    f.set_defaults(func=cmd_data_fetch)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)
    return parser


def run(func, args: argparse.Namespace, prog: str = "visionlab") -> int:
    """Run a command, turning user errors (bad data, bad checkpoint, bad flags) into one clear line."""
    from visionlab.data import DatasetError
    from visionlab.engine import CheckpointError, TrainingDiverged

    try:
        return func(args)
    except (CLIError, DatasetError, CheckpointError, NotImplementedError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"{prog}: training diverged: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
