"""``visionlab`` command line: train, eval, predict, compare, data fetch, models (saliency, attack, robustness in
:mod:`visionlab.cli_analysis`; report in :mod:`visionlab.cli_report`).

Flags left unset fall back to the recipe for the (model, dataset) pair (:mod:`visionlab.recipes`), then to the
original course defaults (:class:`visionlab.engine.TrainConfig`).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from visionlab.errors import ConfigError, UserError

__all__ = [
    "FIELD_FLAGS",
    "CLIError",
    "build_parser",
    "check_data_flags",
    "format_user_error",
    "main",
    "reads_data_root",
    "run",
    "train_config_from_args",
]

# argparse dest -> TrainConfig field, for the training flags that map one to one.
_TRAIN_FIELDS = (
    "data", "data_root", "image_size", "limit_train", "limit_val", "workers", "model", "epochs", "start_epoch",
    "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup", "clip_grad", "label_smoothing", "tta",
    "seed", "device", "amp", "channels_last", "out", "print_freq", "adv_train", "adv_eps", "adv_steps", "adv_step",
    "adv_mix", "trades_beta", "select_by", "robust_val", "pretrained", "freeze_backbone", "unfreeze_at", "head_lr_mult",
    "compile", "sync_bn", "cache_images", "augment", "ema",
)  # fmt: skip
# Fields a full resume may change: they do not alter the arithmetic of the run.
_RUNTIME_FIELDS = (
    "epochs", "workers", "out", "print_freq", "device", "data_root", "progress", "quiet", "tensorboard", "compile",
    "cache_images",
)  # fmt: skip

# The one field -> flag table: a ConfigError about a TrainConfig field (or a command's option) is shown as
# "FLAG: message". Library messages speak of fields; only this table knows the flags. main.py overrides the few it
# spells differently.
FIELD_FLAGS: dict[str, str] = {
    "data": "--data", "data_root": "--data-root", "image_size": "--image-size", "limit_train": "--limit-train",
    "limit_val": "--limit-val", "workers": "-j/--workers", "check_images": "--no-check-images", "model": "--model",
    "cache_images": "--cache-images", "augment": "--augment",
    "conv": "--use-custom-conv", "epochs": "--epochs", "start_epoch": "--start-epoch", "batch_size": "-b/--batch-size",
    "optimizer": "--optimizer", "lr": "--lr", "momentum": "--momentum", "weight_decay": "--wd/--weight-decay",
    "warmup": "--warmup", "clip_grad": "--clip-grad", "label_smoothing": "--label-smoothing", "tta": "--tta",
    "ema": "--ema", "seed": "--seed", "device": "--device", "amp": "--amp", "channels_last": "--channels-last",
    "out": "--out",
    "print_freq": "-p/--print-freq", "tensorboard": "--no-tensorboard", "progress": "--no-progress",
    "quiet": "-q/--quiet", "resume": "--resume", "topk": "--topk", "split": "--split", "labels": "--labels",
    "adv_train": "--adv-train",
    "adv_eps": "--adv-eps", "adv_steps": "--adv-steps", "adv_step": "--adv-step", "adv_mix": "--adv-mix",
    "trades_beta": "--trades-beta", "select_by": "--select-by", "robust_val": "--robust-val",
    "pretrained": "--pretrained", "freeze_backbone": "--freeze-backbone", "unfreeze_at": "--unfreeze-at",
    "head_lr_mult": "--head-lr-mult", "compile": "--compile", "sync_bn": "--sync-bn",
    # the analysis commands' options (visionlab.cli_analysis) and the settings of the objects they build
    "attack": "--attack", "eps": "--eps", "step": "--step", "steps": "--steps", "restarts": "--restarts",
    "norm": "--norm", "targeted": "--targeted", "num": "--num", "smoothgrad_samples": "--smoothgrad",
    "noise_std": "--noise-std", "at_eps": "--at-eps", "at_steps": "--at-steps",
    # data fetch
    "sha256": "--sha256",
}  # fmt: skip


class CLIError(UserError):
    """A command-line usage error (a missing path, flags that do not go together): one line, exit status 2."""


_WORKERS_HELP = (
    "data-loading worker processes of each process (default: min(4, the CPUs this process may use / torchrun's "
    "processes on this node)); not for fashion-mnist or cifar10, batched in memory"
)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Training flags (no defaults here: None means 'from the recipe or TrainConfig')."""
    d = p.add_argument_group("data")
    d.add_argument("--data", help="fashion-mnist (default) | miniplaces:PATH | folder:PATH | cifar10:PATH | PATH")
    d.add_argument("--data-root", help="where --data fashion-mnist is kept (default $VISIONLAB_DATA or ./data)")
    d.add_argument("--image-size", type=int, help="model input side for file datasets (default 128)")
    d.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    d.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    d.add_argument("-j", "--workers", type=int, help=_WORKERS_HELP)
    d.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    d.add_argument("--augment", metavar="SPEC",
                   help="Fashion-MNIST / CIFAR-10 batch augmentation: none, or comma-separated flip, crop=PAD, "
                        "erase=P (default: flip; CIFAR-10 flip,crop=2)")  # fmt: skip
    d.add_argument("--cache-images", action="store_true", default=None,
                   help="MiniPlaces / ImageFolder: decode each image once and keep it in memory (MiniPlaces: "
                        "~5.4 GB); the same samples, no JPEG decoding after the first pass")  # fmt: skip
    m = p.add_argument_group("model")
    m.add_argument("--model", help="registered model name (visionlab models); default simplenet")
    m.add_argument("--use-custom-conv", action="store_true", help="build every conv with the unfold/fold conv")
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--pretrained", metavar="imagenet|PATH",
                   help="start from pretrained weights, head replaced: imagenet (torchvision's, from the torch hub "
                        "cache, never downloaded; resnet18), a torchvision state dict, a safetensors file or a "
                        "visionlab checkpoint")  # fmt: skip
    f.add_argument("--freeze-backbone", action="store_true", default=None,
                   help="train only the classifier head (frozen batch norms stay in eval mode)")  # fmt: skip
    f.add_argument("--unfreeze-at", type=int, metavar="EPOCH",
                   help="with --freeze-backbone: frozen for the first EPOCH epochs only, then all trains")  # fmt: skip
    f.add_argument("--head-lr-mult", type=float, metavar="M", help="the head's lr is M times --lr (default 1)")
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
    a = p.add_argument_group("adversarial training (L∞, pixel units)")
    a.add_argument("--adv-train", choices=("pgd", "fgsm-rs", "n-fgsm", "trades"),
                   help="train on PGD (Madry), FGSM with random start (Wong et al.), N-FGSM (noise 2 eps, no "
                        "projection; de Jorge et al.) or TRADES examples")  # fmt: skip
    a.add_argument("--adv-eps", type=float, help="radius (default 0.1)")
    a.add_argument("--adv-steps", type=int, metavar="K", help="PGD / TRADES attack steps (default 3)")
    a.add_argument("--adv-step", type=float, help="attack step (default 2.5 eps / K; 1.25 eps fgsm-rs; eps n-fgsm)")
    a.add_argument("--adv-mix", type=float, metavar="R", help="weight of the clean loss (default 0; original 0.5)")
    a.add_argument("--trades-beta", type=float, metavar="B", help="TRADES' KL weight (default 6)")
    a.add_argument("--select-by", choices=("clean", "robust"),
                   help="model_best by clean top-1 (default) or PGD-10 top-1 on --robust-val images")  # fmt: skip
    a.add_argument("--robust-val", type=int, metavar="N", help="validation images for PGD top-1 (default 1000)")
    r = p.add_argument_group("run")
    r.add_argument("--resume", metavar="CKPT", help="checkpoint.pth.tar (exact resume) or model_best (fine-tune)")
    r.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<dataset>-<time>)")
    r.add_argument("--seed", type=int, help="default 0")
    r.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    r.add_argument("--amp", action="store_true", default=None, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    r.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    r.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        metavar="BACKEND",
        help="torch.compile the training step (backend default inductor: needs a C++ compiler on CPU; the first "
        "steps compile)",
    )
    r.add_argument("--sync-bn", action="store_true", default=None,
                   help="under torchrun: batch-norm statistics over all processes (SyncBatchNorm)")  # fmt: skip
    r.add_argument("--tta", action="store_true", default=None, help="evaluate with horizontal-flip averaging")
    r.add_argument("--ema", type=float, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (e.g. 0.999; default 0: none), "
                   "validated every epoch and saved as model_ema.pth.tar")  # fmt: skip
    r.add_argument("-p", "--print-freq", type=int, help="log every N steps (default 10)")
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display (by default a bar on a terminal, a line every 10 s in a log)",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="only the result and warnings on the console")
    r.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard events")


def train_config_from_args(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Resolve flags + recipe + defaults into a TrainConfig; returns ``(config, resume_path)``.

    Every flag given is checked against its field's range first, before the checkpoint or any data is read
    (also a flag an exact resume then ignores); then each flag given against the resolved run, which must read
    it (:func:`check_data_flags`, :func:`_check_adversarial_flags`). ``-j`` left unset is
    :func:`~visionlab.runtime.distributed.default_workers`. The caller validates the resolved config as a whole.
    """
    from visionlab.data import FILE_KINDS, parse_spec
    from visionlab.engine import TrainConfig
    from visionlab.engine.config import check_field
    from visionlab.recipes import recipe_for
    from visionlab.runtime.distributed import default_workers

    given = {f: getattr(args, f) for f in _TRAIN_FIELDS if getattr(args, f, None) is not None}
    if getattr(args, "use_custom_conv", False):
        given["conv"] = "custom"
    if getattr(args, "no_check_images", False):
        given["check_images"] = False
    if getattr(args, "no_progress", False) or getattr(args, "quiet", False):
        given["progress"] = False
    if getattr(args, "quiet", False):
        given["quiet"] = True
    if getattr(args, "no_tensorboard", False):
        given["tensorboard"] = False
    for key, value in given.items():
        check_field(key, value)

    resume = getattr(args, "resume", None)
    state = _load_model_checkpoint(resume) if resume else None
    if state is not None and "optimizer" in state:  # exact resume: the stored run, run-time fields overridable
        cfg = _exact_resume_config(state, given)
        check_data_flags(cfg.data, workers=given.get("workers"), data_root=given.get("data_root"))
        return cfg, resume
    if state is not None:  # fine-tuning: the architecture comes from the checkpoint, the rest from the flags
        given.setdefault("model", state["model_args"]["name"])
        given.setdefault("conv", state["model_args"].get("conv", "native"))
        given.setdefault("data", state["config"]["data"])

    data = given.get("data", TrainConfig.data)
    kind, _ = parse_spec(data) if data != "fashion-mnist" else ("fashion-mnist", "")
    if state is not None and kind in FILE_KINDS:
        given.setdefault("image_size", state["model_args"]["image_size"])  # decode at the size the model takes
    values = recipe_for(given.get("model", TrainConfig.model), kind)
    values.update(given)
    values.setdefault("workers", default_workers())
    cfg = TrainConfig(**values)
    check_data_flags(cfg.data, workers=given.get("workers"), data_root=given.get("data_root"))
    _check_adversarial_flags(cfg, given)
    return cfg, resume


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


def _adversarial_readers(cfg: Any) -> dict[str, tuple[bool, str]]:
    """The adversarial-training fields only some runs read: ``field -> (whether cfg's run reads it, what it
    needs)``."""
    monitored = cfg.adv_train is not None or cfg.select_by == "robust"
    return {
        "adv_eps": (monitored, "--adv-train or --select-by robust (the radius of their PGD)"),
        "adv_steps": (cfg.adv_train in ("pgd", "trades"),
                      "--adv-train pgd or trades (fgsm-rs and n-fgsm take one step)"),
        "adv_step": (cfg.adv_train is not None, "--adv-train"),
        "adv_mix": (cfg.adv_train in ("pgd", "fgsm-rs", "n-fgsm"),
                    "--adv-train pgd, fgsm-rs or n-fgsm (TRADES weighs its two terms by --trades-beta)"),
        "trades_beta": (cfg.adv_train == "trades", "--adv-train trades"),
        "robust_val": (monitored, "--adv-train or --select-by robust (the images their PGD validation attacks)"),
    }  # fmt: skip


def _check_adversarial_flags(cfg: Any, given: Mapping[str, Any]) -> None:
    """Refuse an adversarial-training flag given to a run that does not read it (``--trades-beta`` without
    TRADES, ``--adv-steps`` with FGSM-RS, ...): run and ignored, the run would not be the one asked for."""
    for field, (reads, needs) in _adversarial_readers(cfg).items():
        if field in given and not reads:
            raise CLIError(f"{FIELD_FLAGS[field]}: used only with {needs}")


def _exact_resume_config(state: dict[str, Any], given: dict[str, Any]) -> Any:
    """The checkpoint's config with the run-time fields of ``given`` applied; other flags are ignored loudly."""
    from visionlab.engine import TrainConfig

    values = dict(state["config"])
    # Where the run was first written is no instruction: it resumes next to the checkpoint (which may have been
    # moved or copied) unless --out says otherwise.
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
    return TrainConfig.from_dict(values)


def _load_model_checkpoint(path: str) -> dict[str, Any]:
    """:func:`~visionlab.engine.load_checkpoint`, also requiring the stored architecture (``model_args``)."""
    from visionlab.engine import CheckpointError, load_checkpoint

    state = load_checkpoint(path)
    model_args = state.get("model_args")
    if not isinstance(model_args, dict) or not {"name", "num_classes", "in_channels", "image_size"} <= set(model_args):
        raise CheckpointError(f"{path}: no model architecture stored (model_args); not a visionlab model checkpoint")
    return state


def _check_options(args: argparse.Namespace, *names: str) -> None:
    """Check command options that share a TrainConfig field's meaning (``batch_size``, ``workers``, ...)."""
    from visionlab.engine.config import check_field

    for name in names:
        value = getattr(args, name)
        check_field(name, "auto" if name == "device" and value is None else value)


# ------------------------------------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from visionlab.engine import Trainer
    from visionlab.report import PlotCurves

    cfg, resume = train_config_from_args(args)
    cfg.validate()  # the whole configuration, before any data is read or a run directory written
    trainer = Trainer(cfg, resume=resume, callbacks=[PlotCurves()])
    result = trainer.fit()
    if not trainer.dist.is_main:  # under torchrun: rank 0 reports
        return 0
    if "val_top1" in result:
        print(f"* Acc@1 {result['val_top1']:.3f} Acc@5 {result['val_top5']:.3f} (best Acc@1 {result['best_top1']:.3f})")
    else:
        print(f"nothing to train: the run had already reached epoch {cfg.epochs}")
    print(f"run directory: {result['run_dir']}")
    return 0


def _eval_data(state: dict[str, Any], args: argparse.Namespace, *, strict: bool = True):
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


def cmd_eval(args: argparse.Namespace) -> int:
    from visionlab.engine import evaluate, limit, make_loader, model_from_checkpoint
    from visionlab.runtime.distributed import default_workers, init_distributed, shard_dataset

    _check_options(args, "batch_size", "limit_val", "device")
    if args.workers is not None:
        _check_options(args, "workers")
    state = _load_model_checkpoint(args.resume)
    dist, device = init_distributed(args.device or "auto")  # under torchrun each rank evaluates its share
    bundle = _eval_data(state, args)
    shard = shard_dataset(limit(bundle.val, args.limit_val), dist)
    workers = default_workers() if args.workers is None else args.workers
    loader = make_loader(shard, args.batch_size, train=False, workers=workers, device=device)
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
    import torch

    from visionlab.data import DatasetError, eval_transform
    from visionlab.data.decode import ImageDecodeError, read_image
    from visionlab.engine import model_from_checkpoint, select_device
    from visionlab.engine.config import Range

    _check_options(args, "batch_size", "device")
    Range(1, integer=True).check("topk", args.topk)
    state = _load_model_checkpoint(args.resume)
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


def cmd_compare(args: argparse.Namespace) -> int:
    from visionlab.report import plot_runs

    for run in args.runs:
        if not (Path(run) / "metrics.jsonl").is_file():
            raise CLIError(f"{run}: not a run directory (no metrics.jsonl)")
    out = plot_runs(args.runs, args.output, labels=args.labels)
    print(f"wrote {out}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from visionlab.data import fetch_fashion_mnist, fetch_miniplaces
    from visionlab.data.fetch import MINIPLACES_DEVKIT_URL, MINIPLACES_URL

    if args.dataset == "fashion-mnist":
        for flag, value in (("--url", args.url), ("--sha256", args.sha256), ("--devkit-url", args.devkit_url)):
            if value is not None:
                raise CLIError(f"{flag}: only for miniplaces (fashion-mnist's sources and checksums are built in)")
        print(fetch_fashion_mnist(args.root, force=args.force))
        return 0
    target = fetch_miniplaces(
        args.root,
        url=args.url or MINIPLACES_URL,
        sha256=args.sha256,
        devkit_url=args.devkit_url or MINIPLACES_DEVKIT_URL,
        force=args.force,
        show_progress=not args.no_progress,
    )
    print(target)
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
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    p.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("-j", "--workers", type=int, help=_WORKERS_HELP)
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionlab",
        description="train, evaluate and predict with image classifiers; compare, explain, attack and report on "
        "them (docs/CLI.md lists every option)",
    )
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
    p.add_argument("--split", choices=("test", "val"), help="with --data: the split to predict (default test)")
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
    f = data_sub.add_parser(
        "fetch",
        help="download, verify and unpack a dataset into the data root (fashion-mnist, miniplaces)",
        description="fashion-mnist: ROOT/fashion-mnist, checksums built in. miniplaces: ROOT/miniplaces, the layout "
        "--data miniplaces:ROOT/miniplaces reads; the download resumes where an interrupted one stopped, and the "
        "archive is verified when --sha256 is given (MIT publishes no checksum for it).",
    )
    f.add_argument("dataset", choices=("fashion-mnist", "miniplaces"))
    f.add_argument("--root", help="data root (default $VISIONLAB_DATA or ./data)")
    f.add_argument("--force", action="store_true", help="fetch again even if a verified copy exists")
    f.add_argument("--url", help="miniplaces: the tar archive to download (default: MIT CSAIL's data.tar.gz)")
    f.add_argument("--sha256", metavar="HEX", help="miniplaces: the archive's expected SHA-256")
    f.add_argument(
        "--devkit-url",
        metavar="URL",
        help="miniplaces: where train.txt/val.txt/categories.txt are fetched when the archive lacks them "
        "(URL + 'train.txt'; default: the CSAILVision/miniplaces development kit on GitHub)",
    )
    f.add_argument("--no-progress", action="store_true", help="no progress display for the download")
    f.set_defaults(func=cmd_data_fetch)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)

    from visionlab.cli_analysis import add_analysis_commands
    from visionlab.cli_report import add_report_command

    add_analysis_commands(sub)
    add_report_command(sub)
    return parser


def format_user_error(exc: UserError, flags: Mapping[str, str] = FIELD_FLAGS) -> str:
    """The one line a user error prints: the message, led by the flag when a :class:`ConfigError` names a field
    that ``flags`` maps (``--label-smoothing: must be a number in [0, 1), got 2.0``)."""
    message = exc.message if isinstance(exc, ConfigError) else str(exc)
    if "Original Traceback" in message:  # re-raised by a DataLoader worker: keep the original message only
        message = message.rstrip().splitlines()[-1].partition(": ")[2] or message
    if isinstance(exc, ConfigError) and exc.field:
        return f"{flags[exc.field]}: {message}" if exc.field in flags else f"{exc.field}: {message}"
    return message


# OSErrors that are about the machine or the paths given (permissions, a full or read-only disk, a file where a
# directory should be), not about visionlab's code.
_ENVIRONMENT_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
    errno.ENAMETOOLONG,
}  # fmt: skip


def run(
    func: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    prog: str = "visionlab",
    flags: Mapping[str, str] = FIELD_FLAGS,
) -> int:
    """Run a command. A :class:`~visionlab.errors.UserError` (bad data, checkpoint or flag) prints one line and
    exits 2; a diverged run exits 3; Ctrl-C exits 130. Anything else is a bug in visionlab: its traceback is
    printed with a request to report it, and the exit status is 1. Under torchrun the process group a command
    joined is left cleanly on the way out."""
    from visionlab.engine import TrainingDiverged

    try:
        return func(args)
    except UserError as exc:
        print(f"{prog}: error: {format_user_error(exc, flags)}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"{prog}: training diverged: {exc.detail}. {exc.advice(flags)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`visionlab models | head -1`): not an error of ours
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a program the pipe stopped
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _internal_error(prog)
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"{prog}: error: {where}{exc.strerror}", file=sys.stderr)
        return 2
    except Exception:
        return _internal_error(prog)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Destroy the torch.distributed group a command joined (torchrun), so every rank exits without warnings."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured): nothing is flushed to a pipe
        pass


def _internal_error(prog: str) -> int:
    traceback.print_exc()
    print(f"{prog}: internal error (a bug in visionlab): please report it with the traceback above", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None, *, prog: str = "visionlab", flags: Mapping[str, str] = FIELD_FLAGS) -> int:
    """Parse ``argv`` and run the command; ``prog`` and ``flags`` let ``main.py`` speak in its own flags."""
    args = build_parser().parse_args(argv)
    return run(args.func, args, prog, flags)


if __name__ == "__main__":
    sys.exit(main())
