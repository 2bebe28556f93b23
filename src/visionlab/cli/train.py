"""``visionlab train`` and ``visionlab compare``: the training flags, resolved into a
:class:`~visionlab.engine.TrainConfig`, and the figure comparing runs.

Flags left unset fall back to the named recipe ``--recipe NAME`` asks for, then to the recipe for the (model,
dataset) pair (:mod:`visionlab.recipes`), then to the original course defaults
(:class:`visionlab.engine.TrainConfig`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionlab.cli.common import (
    FIELD_FLAGS,
    WORKERS_HELP,
    CLIError,
    check_data_flags,
    load_model_checkpoint,
)

__all__ = [
    "add_compare_command",
    "add_train_arguments",
    "add_train_command",
    "check_device_input",
    "cmd_compare",
    "cmd_train",
    "train_config_from_args",
]

# argparse dest -> TrainConfig field, for the training flags that map one to one.
_TRAIN_FIELDS = (
    "data", "data_root", "image_size", "limit_train", "limit_val", "workers", "model", "epochs", "start_epoch",
    "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup", "clip_grad", "label_smoothing", "tta",
    "seed", "device", "amp", "channels_last", "out", "print_freq", "adv_train", "adv_eps", "adv_steps", "adv_step",
    "adv_mix", "trades_beta", "select_by", "robust_val", "pretrained", "freeze_backbone", "unfreeze_at", "head_lr_mult",
    "compile", "sync_bn", "cache_images", "augment", "ema", "noise_sigma", "shuffle_labels", "gpu_augment",
    "gpu_decode", "adv_eps_ramp", "swa_start", "swa_every", "deterministic",
)  # fmt: skip
# Fields a full resume may change: they do not alter the arithmetic of the run.
_RUNTIME_FIELDS = (
    "epochs", "workers", "out", "print_freq", "device", "data_root", "progress", "quiet", "tensorboard", "compile",
    "cache_images", "gpu_augment", "gpu_decode",
)  # fmt: skip


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("train", help="train a model (and evaluate it every epoch)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)


def add_compare_command(sub: argparse._SubParsersAction) -> None:
    """Register ``compare`` (the curves of several runs in one figure) on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("compare", help="one figure of several runs' loss, top-1/top-5 and lr curves")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default="compare.png")
    p.add_argument("--labels", nargs="+", help="legend labels, one per run (default: directory names)")
    p.set_defaults(func=cmd_compare)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Training flags (no defaults here: None means 'from the recipe or TrainConfig')."""
    _add_data_arguments(p)
    _add_model_arguments(p)
    _add_finetune_arguments(p)
    _add_optimization_arguments(p)
    _add_adversarial_arguments(p)
    _add_noise_arguments(p)
    _add_run_arguments(p)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data flags of ``train``."""
    d = p.add_argument_group("data")
    d.add_argument("--data", help="fashion-mnist (default) | miniplaces:PATH | folder:PATH | cifar10:PATH | PATH")
    d.add_argument("--data-root", help="where --data fashion-mnist is kept (default $VISIONLAB_DATA or ./data)")
    d.add_argument("--image-size", type=int, help="model input side for file datasets (default 128)")
    d.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    d.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation images")
    d.add_argument("-j", "--workers", type=int, help=WORKERS_HELP)
    d.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    d.add_argument("--augment", metavar="SPEC",
                   help="Fashion-MNIST / CIFAR-10 batch augmentation: none, or comma-separated flip, crop=PAD, "
                        "erase=P, noise=P (default: flip; CIFAR-10 flip,crop=2). noise=P: on a share P of images "
                        "ImageNet-C's Gaussian, shot or impulse noise at a random severity 1-5 (the corruptions "
                        "command's; its noise rows then measure this training, not held-out corruptions)")  # fmt: skip
    d.add_argument("--cache-images", nargs="?", const=True, choices=("host", "pinned", "device"), metavar="WHERE",
                   help="MiniPlaces / ImageFolder: decode each image once and keep it in memory: the same samples, "
                        "no JPEG decoding after the first pass. MiniPlaces takes 100k x 3 x 128 x 128 uint8 = 4.9 GB "
                        "for train (+0.5 GB val). WHERE: host (default, what the bare flag does), pinned (page-locked "
                        "host memory) or device (GPU memory); pinned and device need CUDA and augment on the GPU "
                        "(--gpu-augment), straight from the cache, without worker processes")  # fmt: skip
    d.add_argument("--gpu-augment", action="store_true", default=None,
                   help="MiniPlaces / ImageFolder on CUDA: workers only decode and draw the random augmentation; the "
                        "GPU applies it to the whole uint8 batch (same draws as the CPU path for a --seed). Helps "
                        "when the workers cannot keep the GPU busy (few cores, a fast model)")  # fmt: skip
    d.add_argument("--gpu-decode", action="store_true", default=None,
                   help="with --gpu-augment (implied): workers only read the JPEG files; the GPU decodes the batch "
                        "(nvJPEG: its pixels may differ slightly from the CPU decoder's; not yet measured). JPEG "
                        "datasets, not with --cache-images")  # fmt: skip
    d.add_argument("--shuffle-labels", "--random-labels", dest="shuffle_labels", action="store_true", default=None,
                   help="train on the training labels permuted once with --seed (class counts kept; validation "
                        "keeps the true labels): the model for explain --sanity --random-labels")  # fmt: skip


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The architecture flags of ``train``."""
    m = p.add_argument_group("model")
    m.add_argument("--model", help="registered model name (visionlab models); default simplenet")
    m.add_argument("--recipe", metavar="NAME",
                   help=f"a named recipe: {', '.join(_recipe_names())} (flags given win over it; it sets --model "
                        "and --data when they are not given)")  # fmt: skip
    m.add_argument("--use-custom-conv", action="store_true", help="build every conv with the unfold/fold conv")


def _recipe_names() -> list[str]:
    from visionlab.recipes import NAMED_RECIPES

    return sorted(NAMED_RECIPES)


def _add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """The fine-tuning flags of ``train``."""
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


def _add_optimization_arguments(p: argparse.ArgumentParser) -> None:
    """The optimizer and schedule flags of ``train``."""
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


def _add_adversarial_arguments(p: argparse.ArgumentParser) -> None:
    """The adversarial-training flags of ``train``."""
    a = p.add_argument_group("adversarial training (L∞, pixel units)")
    a.add_argument("--adv-train", choices=("pgd", "fgsm-rs", "n-fgsm", "trades"),
                   help="train on PGD (Madry), FGSM with random start (Wong et al.), N-FGSM (noise 2 eps, no "
                        "projection; de Jorge et al.) or TRADES examples")  # fmt: skip
    a.add_argument("--adv-eps", type=float, help="radius (default 0.1)")
    a.add_argument(
        "--adv-eps-ramp",
        type=float,
        metavar="E",
        help="ε curriculum: the training radius (and step) grows linearly from 0 to --adv-eps over the first E "
        "epochs, per step (default 0: none); the PGD validation always uses --adv-eps",
    )
    a.add_argument("--adv-steps", type=int, metavar="K", help="PGD / TRADES attack steps (default 3)")
    a.add_argument("--adv-step", type=float, help="attack step (default 2.5 eps / K; 1.25 eps fgsm-rs; eps n-fgsm)")
    a.add_argument("--adv-mix", type=float, metavar="R", help="weight of the clean loss (default 0; original 0.5)")
    a.add_argument("--trades-beta", type=float, metavar="B", help="TRADES' KL weight (default 6)")
    a.add_argument("--select-by", choices=("clean", "robust"),
                   help="model_best by clean top-1 (default) or PGD-10 top-1 on --robust-val images")  # fmt: skip
    a.add_argument("--robust-val", type=int, metavar="N", help="validation images for PGD top-1 (default 1000)")


def _add_noise_arguments(p: argparse.ArgumentParser) -> None:
    """The Gaussian-augmentation flag of ``train`` (training for ``visionlab certify``)."""
    g = p.add_argument_group("randomized smoothing (L2, pixel units)")
    g.add_argument("--noise-sigma", type=float, metavar="S",
                   help="train on images plus N(0, S^2) noise, fresh every step, not clipped (Cohen et al.'s "
                        "Gaussian augmentation; certify with the same --sigma); not with --adv-train")  # fmt: skip


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how ``train`` runs: resume, output, seed, device, speed switches, logging."""
    r = p.add_argument_group("run")
    r.add_argument("--resume", metavar="CKPT", help="checkpoint.pth.tar (exact resume) or model_best (fine-tune)")
    r.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<dataset>-<time>)")
    r.add_argument("--seed", type=int, help="default 0")
    r.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    r.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision: bf16 (fp16 with loss scaling on GPUs without bf16)")  # fmt: skip
    r.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format")
    r.add_argument("--no-deterministic", dest="deterministic", action="store_false", default=None,
                   help="allow nondeterministic kernels and cuDNN's autotuner (faster on a GPU; an exact resume and "
                        "a rerun then match only to rounding)")  # fmt: skip
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
    r.add_argument(
        "--swa-start",
        type=float,
        metavar="E",
        help="stochastic weight averaging: also keep the equal-weight average of the weights from epoch E (may be "
        "fractional) to the end, validated every epoch and saved as model_swa.pth.tar",
    )
    r.add_argument(
        "--swa-every",
        choices=("epoch", "steps"),
        help="with --swa-start: average at every epoch end (default) or after every optimizer step",
    )
    r.add_argument("-p", "--print-freq", type=int, help="log every N steps (default 10)")
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress display (by default a bar on a terminal, a line every 10 s in a log)",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="only the result and warnings on the console")
    r.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard events")


def _given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the command line sets: the flags given, and the switches that set another field."""
    given = {f: getattr(args, f) for f in _TRAIN_FIELDS if getattr(args, f, None) is not None}
    if given.get("cache_images") == "host":  # the bare flag's meaning, stored as it always was
        given["cache_images"] = True
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
    return given


def train_config_from_args(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Resolve flags + named recipe + recipe + defaults into a TrainConfig; returns ``(config, resume_path)``.

    Every flag given is checked against its field's range first, before the checkpoint or any data is read
    (also a flag an exact resume then ignores), and ``--recipe`` must name a known recipe; then each flag given
    against the resolved run, which must read it (:func:`check_data_flags`, :func:`_check_adversarial_flags`),
    and the named recipe against the run's model and dataset. ``-j`` left unset is
    :func:`~visionlab.runtime.distributed.default_workers`. The caller validates the resolved config as a whole.
    """
    from visionlab.data import FILE_KINDS, parse_spec
    from visionlab.engine import TrainConfig
    from visionlab.engine.config import check_field
    from visionlab.recipes import named_recipe, recipe_for
    from visionlab.runtime.distributed import default_workers

    given = _given_fields(args)
    for key, value in given.items():
        check_field(key, value)
    recipe = getattr(args, "recipe", None)
    named = named_recipe(recipe) if recipe is not None else {}

    resume = getattr(args, "resume", None)
    state = load_model_checkpoint(resume) if resume else None
    if state is not None and "optimizer" in state:  # exact resume: the stored run, run-time fields overridable
        if recipe is not None:
            print(f"[visionlab] note: ignoring --recipe {recipe}: an exact resume keeps the checkpoint's configuration",
                  file=sys.stderr)  # fmt: skip
        cfg = _exact_resume_config(state, given)
        check_data_flags(cfg.data, workers=given.get("workers"), data_root=given.get("data_root"))
        return cfg, resume
    if state is not None:  # fine-tuning: the architecture comes from the checkpoint, the rest from the flags
        given.setdefault("model", state["model_args"]["name"])
        given.setdefault("conv", state["model_args"].get("conv", "native"))
        given.setdefault("data", state["config"]["data"])

    data = given.get("data", named.get("data", TrainConfig.data))
    kind, _ = parse_spec(data) if data != "fashion-mnist" else ("fashion-mnist", "")
    if recipe is not None:  # refused for another model or dataset than its own
        named_recipe(recipe, model=given.get("model"), data_kind=kind)
    if state is not None and kind in FILE_KINDS:
        given.setdefault("image_size", state["model_args"]["image_size"])  # decode at the size the model takes
    values = recipe_for(given.get("model", named.get("model", TrainConfig.model)), kind)
    values.update(named)
    values.update(given)
    values.setdefault("workers", default_workers())
    cfg = TrainConfig(**values)
    check_data_flags(cfg.data, workers=given.get("workers"), data_root=given.get("data_root"))
    _check_adversarial_flags(cfg, given)
    return cfg, resume


def check_device_input(cfg: Any) -> None:
    """Refuse the device-side input options without a CUDA device: the library allows them on the CPU device,
    where they reproduce the CPU path's batches (its tests) but only add work. The flag named is the first given
    of --gpu-augment, --gpu-decode, --cache-images pinned|device."""
    from visionlab.runtime import select_device

    if not cfg.augments_on_device:
        return
    device = select_device(cfg.device)
    if device.type == "cuda":
        return
    flag = "--gpu-augment" if cfg.gpu_augment else "--gpu-decode" if cfg.gpu_decode else "--cache-images"
    what = f"--cache-images {cfg.cache_images}" if flag == "--cache-images" else flag
    raise CLIError(f"{flag}: needs a CUDA device (here: {device}); {what} moves the augmentation to the GPU, and "
                   "on the CPU the workers already do the same work")  # fmt: skip


def _adversarial_readers(cfg: Any) -> dict[str, tuple[bool, str]]:
    """The adversarial-training (and weight-averaging) fields only some runs read: ``field -> (whether cfg's run
    reads it, what it needs)``."""
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
        "adv_eps_ramp": (cfg.adv_train is not None, "--adv-train (it ramps the radius of the training attack)"),
        "swa_every": (cfg.swa_start is not None, "--swa-start"),
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


# ------------------------------------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    """Resolve the flags into a TrainConfig, validate it whole, train, and print the result."""
    from visionlab.engine import Trainer
    from visionlab.report import PlotCurves

    cfg, resume = train_config_from_args(args)
    cfg.validate()  # the whole configuration, before any data is read or a run directory written
    check_device_input(cfg)
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


def cmd_compare(args: argparse.Namespace) -> int:
    """One figure of the curves of every run directory given (each must hold metrics.jsonl)."""
    from visionlab.report import plot_runs

    for run in args.runs:
        if not (Path(run) / "metrics.jsonl").is_file():
            raise CLIError(f"{run}: not a run directory (no metrics.jsonl)")
    out = plot_runs(args.runs, args.output, labels=args.labels)
    print(f"wrote {out}")
    return 0
