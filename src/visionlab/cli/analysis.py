"""The analysis commands of the command line: ``saliency``, ``attack`` and ``robustness``.

Each loads a checkpoint (rebuilt from its stored architecture), takes the validation images of its dataset (or
of ``--data``, converted to what the model takes as ``eval`` does) in pixels [0, 1] — or a model from outside
visionlab with the images of ``--data`` (:mod:`visionlab.cli.model_flags`) — and hands them to
:mod:`visionlab.explain` or :mod:`visionlab.robustness`. Images go to PNG files and to TensorBoard under the
original course's tags; numbers are printed (``--json`` for one machine-readable line) and written as JSON
(``attack/attack.json``, ``robustness/sweep.json``) beside the images, where ``visionlab report`` finds them
(by default next to the checkpoint, the weights file or the factory file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionlab.cli.common import CLIError, check_options
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_model, model_file, model_label

if TYPE_CHECKING:  # torch is imported by the commands, not by `visionlab --help`
    import torch

__all__ = ["add_analysis_commands", "attack_options", "build_attack", "cmd_attack", "cmd_robustness", "cmd_saliency"]

ATTACKS = ("pgd", "fgsm", "autoattack", "original")


def _common(p: argparse.ArgumentParser, resume_nargs: str | None = None) -> None:
    """The options every analysis command takes (the model's group is added by :func:`_model_group`)."""
    if resume_nargs:
        p.add_argument("--resume", nargs=resume_nargs, metavar="CKPT",
                       help="checkpoint(s) to load; or one model of the group below")  # fmt: skip
    else:
        p.add_argument(
            "--resume", metavar="CKPT", help="checkpoint to load (best or last); or a model of the group below"
        )
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    p.add_argument("-b", "--batch-size", type=int, default=250, help="images per batch (default 250)")
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="DIR", help="where images and tables go (default: next to the checkpoint)")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")


def _attack_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("threat model (pixel units: images in [0, 1])")
    a.add_argument("--attack", choices=ATTACKS, default="pgd",
                   help="pgd (default) | fgsm (one step of length --eps: reads --norm, --eps, --targeted) | "
                        "autoattack (torchattacks' standard ensemble: reads --norm, --eps, --seed) | original (the "
                        "course's: 10 steps of 0.01 std in the 0.1 std ball, least-likely target; reads none). A "
                        "threat-model flag the attack does not read is refused")  # fmt: skip
    a.add_argument("--norm", choices=("linf", "l2"), help="threat model: linf (default) or l2")
    a.add_argument("--eps", type=float, help="radius (default 0.1)")
    a.add_argument("--step", type=float,
                   help="PGD step size, > 0 (default 2.5 eps / steps, Madry et al.: eps / 4 at the default 10 "
                        "steps; before, eps / 4 whatever --steps)")  # fmt: skip
    a.add_argument("--steps", type=int, help="PGD iterations (default 10)")
    a.add_argument("--restarts", type=int, help="PGD random restarts (default 1)")
    a.add_argument("--no-random-start", action="store_true", help="start PGD at the clean images")
    a.add_argument("--targeted", choices=("least-likely",),
                   help="pgd / fgsm: step towards the least-likely class (down its loss)")  # fmt: skip
    a.add_argument("--early-stop", action="store_true", help="PGD stops on examples already fooled (faster)")
    a.add_argument("--seed", type=int, help="seed of PGD's random starts and of AutoAttack (default 0)")


def add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``saliency``, ``attack`` and ``robustness`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("saliency", help="saliency maps of validation images (red overlays, heat maps)")
    _common(p)
    p.add_argument("--num", type=int, default=20, help="images, the first of the split (default 20)")
    p.add_argument("--target", choices=("predicted", "label"), default="predicted",
                   help="explain the model's own prediction (the original) or the true label")  # fmt: skip
    p.add_argument("--smoothgrad", type=int, default=0, metavar="N", help="SmoothGrad samples (default 0: off)")
    p.add_argument("--noise-std", type=float, help="with --smoothgrad: the noise std in pixels (default 0.1)")
    add_model_arguments(p)
    p.set_defaults(func=cmd_saliency)

    p = sub.add_parser("attack", help="clean and robust accuracy under an attack; -v saves image grids")
    _common(p)
    _attack_arguments(p)
    p.add_argument("--limit-val", type=int, metavar="N", help="attack only the first N validation images")
    p.add_argument("-v", "--vis", action="store_true", help="save original / adversarial / difference grids")
    p.add_argument("--json", action="store_true",
                   help='one JSON line {"clean_top1", "robust_top1", "robust_top5", "n", "attack"} (always '
                        "written to OUT/attack.json too)")  # fmt: skip
    add_model_arguments(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("robustness", help="accuracy vs eps and vs PGD steps: CSV, JSON and plots")
    _common(p, resume_nargs="+")
    p.add_argument("--labels", nargs="+", help="one name per checkpoint (default: run directory names)")
    p.add_argument("--eps", dest="eps_list", type=float, nargs="+", default=[0.0, 0.025, 0.05, 0.1, 0.15, 0.2],
                   help="L∞ radii of the eps sweep, each in [0, 1]")  # fmt: skip
    p.add_argument("--steps", dest="steps_list", type=int, nargs="+", default=[1, 2, 5, 10, 20],
                   help="PGD iterations of the steps sweep, each >= 1")  # fmt: skip
    p.add_argument("--at-eps", type=float, help="radius of the steps sweep, in [0, 1] (default: the largest --eps)")
    p.add_argument("--at-steps", type=int, help="iterations of the eps sweep, >= 1 (default: the most --steps)")
    p.add_argument("--limit-val", type=int, default=1000, metavar="N", help="first N images (default 1000)")
    add_model_arguments(p)
    p.set_defaults(func=cmd_robustness)


# ------------------------------------------------------------------------------------------------ helpers
def _loader(dataset: Any, args: argparse.Namespace, limit: int | None) -> torch.utils.data.DataLoader:
    """The first ``limit`` items of ``dataset``; under torchrun, this rank's share of them (results are summed
    over ranks by the evaluation)."""
    from torch.utils.data import DataLoader, Subset

    from visionlab.runtime.distributed import current_context, shard_dataset

    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    return DataLoader(shard_dataset(dataset, current_context()), batch_size=args.batch_size, shuffle=False)


def _first(dataset: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of ``dataset`` as two tensors."""
    import torch

    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _out_dir(args: argparse.Namespace, source: str | Path, name: str) -> Path:
    """``--out``, else the folder ``name`` next to ``source`` (the checkpoint, weights or factory file)."""
    out = Path(args.out) if args.out else Path(source).parent / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def _tensorboard(out: Path, tags: dict[str, torch.Tensor]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from visionlab.explain import add_to_tensorboard

    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    try:
        for tag, images in tags.items():
            add_to_tensorboard(writer, tag, images)
    finally:
        writer.close()


# ------------------------------------------------------------------------------------------------ saliency
def cmd_saliency(args: argparse.Namespace) -> int:
    """Saliency maps of the first ``--num`` validation images: PNG grids, TensorBoard images, the predictions."""
    import torch

    from visionlab.engine.config import Range
    from visionlab.explain import TAG_SALIENCY, heatmap_overlay, red_overlay, saliency, save_grid

    Range(1, integer=True).check("num", args.num)
    if args.noise_std is not None and not args.smoothgrad:
        raise CLIError("--noise-std: only with --smoothgrad N (the noise of its N copies; the plain map has none)")
    check_model_flags(args)
    _, model, bundle, device = load_model(args, args.resume)
    images, labels = _first(bundle.val, args.num)
    images, labels = images.to(device), labels.to(device)
    noise_std = 0.1 if args.noise_std is None else args.noise_std
    maps = saliency(
        model, images, target=labels if args.target == "label" else None, smoothgrad_samples=args.smoothgrad,
        noise_std=noise_std, generator=torch.Generator().manual_seed(0), batch_size=args.batch_size,
    )  # fmt: skip
    out = _out_dir(args, model_file(args, args.resume), "saliency")
    overlay = red_overlay(images.cpu(), maps.cpu())
    paths = [
        save_grid(images.cpu(), out / "images.png"),
        save_grid(overlay, out / "saliency.png"),
        save_grid(heatmap_overlay(images.cpu(), maps.cpu()), out / "saliency_heatmap.png"),
    ]
    _tensorboard(out, {TAG_SALIENCY: overlay})
    with torch.no_grad():
        predicted = model(images).argmax(1)
    names = bundle.class_names
    print(f"saliency of {len(images)} images ({args.target} class), 10 per row:")
    print(
        "  " + ", ".join(f"{names[int(p)]}{'' if p == y else ' (x)'}" for p, y in zip(predicted, labels, strict=True))
    )
    for path in paths:
        print(f"wrote {path}")
    print(f"TensorBoard: {out / 'tensorboard'} (tag {TAG_SALIENCY})")
    return 0


# ------------------------------------------------------------------------------------------------ attack
# The threat-model options each attack reads (argparse dests). Any other one given is refused with the reason:
# run and ignored, the result would describe an attack the user did not ask for. fgsm and original also accept
# --no-random-start, and original --targeted least-likely: they describe what those attacks do anyway.
_READS = {
    "pgd": ("norm", "eps", "step", "steps", "restarts", "no_random_start", "targeted", "early_stop", "seed"),
    "fgsm": ("norm", "eps", "targeted", "no_random_start"),
    "autoattack": ("norm", "eps", "seed"),
    "original": ("targeted", "no_random_start"),
}
_WHY_NOT = {
    "fgsm": "one step of length --eps from the clean images",
    "autoattack": "torchattacks' standard ensemble sets its own steps, restarts, starts and targets",
    "original": "the course's fixed attack: 10 steps of 0.01 std in the 0.1 std ball towards the least-likely class",
}
_OPTION_FLAGS = {
    "norm": "--norm", "eps": "--eps", "step": "--step", "steps": "--steps", "restarts": "--restarts",
    "no_random_start": "--no-random-start", "targeted": "--targeted", "early_stop": "--early-stop", "seed": "--seed",
}  # fmt: skip
_OPTION_DEFAULTS = {"norm": "linf", "eps": 0.1, "steps": 10, "restarts": 1, "seed": 0}


def attack_options(args: argparse.Namespace) -> dict[str, Any]:
    """The threat-model options of ``args`` (``eps``, ``step``, ``steps``, ...) with their defaults filled in.

    Refuses, with a :class:`~visionlab.cli.common.CLIError` naming the flag and why, an option the chosen ``--attack``
    does not read, ``--seed`` with ``--no-random-start`` (PGD then draws nothing) and a step, steps or restarts
    count out of range: a step of 0 never leaves the clean images, and would report the clean accuracy as robust.
    Reads nothing, so commands call it before loading a checkpoint.
    """
    from visionlab.engine.config import Range

    for name, flag in _OPTION_FLAGS.items():
        value = getattr(args, name)  # None or False: not given (a given 0 is 0, not False)
        if value is not None and value is not False and name not in _READS[args.attack]:
            raise CLIError(f"{flag}: not used by --attack {args.attack} ({_WHY_NOT[args.attack]})")
    if args.no_random_start and args.seed is not None:
        raise CLIError("--seed: not used with --no-random-start (it seeds PGD's random starts)")
    Range(0, low_open=True, optional=True).check("step", args.step)
    for name in ("steps", "restarts"):
        Range(1, integer=True, optional=True).check(name, getattr(args, name))
    options = {name: getattr(args, name) for name in _OPTION_FLAGS}
    options.update({k: v for k, v in _OPTION_DEFAULTS.items() if options[k] is None})
    return options


def build_attack(args: argparse.Namespace, model: torch.nn.Module, num_classes: int) -> Any:
    """The attack the flags describe (:func:`attack_options`; the library objects validate the rest of their
    settings: ConfigError)."""
    import torch

    from visionlab.robustness import FGSM, PGD, AutoAttack, default_step, original_attack

    o = attack_options(args)
    if args.attack == "original":
        return original_attack(model)
    if args.attack == "fgsm":
        return FGSM(model, o["eps"], targeted=o["targeted"], norm=o["norm"])
    if args.attack == "autoattack":
        return AutoAttack(model, eps=o["eps"], norm=o["norm"], n_classes=num_classes, seed=o["seed"])
    step = o["step"] if o["step"] is not None else default_step(o["eps"], o["steps"])
    return PGD(
        model, eps=o["eps"], step=step, steps=o["steps"], norm=o["norm"], random_start=not o["no_random_start"],
        restarts=o["restarts"], targeted=o["targeted"], early_stop=o["early_stop"],
        generator=torch.Generator().manual_seed(o["seed"]),
    )  # fmt: skip


def _save_adversarial_grids(model: torch.nn.Module, attack: Any, dataset: Any, out: Path, n: int = 20) -> list[Path]:
    from visionlab.explain import TAG_ADVERSARIAL, TAG_ORIGINAL, amplified_difference, save_grid

    images, labels = _first(dataset, n)
    device = next(model.parameters()).device
    adv = attack(images.to(device), labels.to(device)).cpu()
    difference = amplified_difference(images, adv)
    _tensorboard(out, {TAG_ORIGINAL: images, TAG_ADVERSARIAL: adv, "Image/Adv_Difference": difference})
    return [save_grid(images, out / "original.png"), save_grid(adv, out / "adversarial.png"),
            save_grid(difference, out / "difference.png")]  # fmt: skip


def cmd_attack(args: argparse.Namespace) -> int:
    """Clean and robust accuracy under the attack of the flags: printed, and written to OUT/attack.json."""
    from visionlab.robustness import robust_evaluate
    from visionlab.runtime.distributed import current_context

    check_options(args, "limit_val")
    attack_options(args)  # a flag the attack would ignore is refused before the checkpoint is read
    check_model_flags(args)
    _, model, bundle, device = load_model(args, args.resume)
    attack = build_attack(args, model, bundle.num_classes)
    loader = _loader(bundle.val, args, args.limit_val)
    dist = current_context()
    result = robust_evaluate(model, loader, attack, device, progress=not args.no_progress and dist.is_main, dist=dist)
    if not dist.is_main:  # every rank has the summed result; one writes and prints it
        return 0
    keys = ("clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1", "n", "attack")
    out = _out_dir(args, model_file(args, args.resume), "attack")
    written = [_write_json({k: result[k] for k in keys}, out / "attack.json")]  # what `visionlab report` shows
    if args.vis:
        written += _save_adversarial_grids(model, attack, bundle.val, out)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: result[k] for k in keys}))
    else:
        print(f"{attack!r} on {result['n']} images")
        print(f"* clean Acc@1 {result['clean_top1']:.3f} Acc@5 {result['clean_top5']:.3f}")
        print(f"* under attack Acc@1 {result['robust_top1']:.3f} Acc@5 {result['robust_top5']:.3f}")
    return 0


def _write_json(value: Any, path: Path) -> Path:
    path.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ robustness
def _check_sweep_options(args: argparse.Namespace) -> None:
    """Each radius in [0, 1] (L∞, pixel units) and each iteration count >= 1, named by its own flag (``--at-eps``,
    not the ``--eps`` of the sweep it parametrises), before any checkpoint is read."""
    from visionlab.engine.config import Range

    radius, count = Range(0, 1, text="a number in [0, 1] (an L∞ radius in pixel units)"), Range(1, integer=True)
    for eps in args.eps_list:
        radius.check("eps", eps)
    for steps in args.steps_list:
        count.check("steps", steps)
    if args.at_eps is not None:
        radius.check("at_eps", args.at_eps)
    if args.at_steps is not None:
        count.check("at_steps", args.at_steps)


def cmd_robustness(args: argparse.Namespace) -> int:
    """Clean and PGD accuracy of each model against eps and against steps: a table, sweep.csv/json and plots."""
    from visionlab.robustness import plot_accuracy_vs_eps, plot_accuracy_vs_steps, sweep, write_sweep
    from visionlab.runtime.distributed import current_context

    check_options(args, "limit_val")
    _check_sweep_options(args)
    check_model_flags(args)
    dist = current_context()
    resumes = args.resume or [None]  # None: the one model of --model-arch / --model-factory
    labels = args.labels or [model_label(args, r) for r in resumes]
    if len(labels) != len(resumes):
        raise CLIError(f"--labels: {len(labels)} labels for {len(resumes)} checkpoints")
    rows: list[dict[str, Any]] = []
    for resume, label in zip(resumes, labels, strict=True):
        _, model, bundle, device = load_model(args, resume)
        rows += sweep(
            model, _loader(bundle.val, args, args.limit_val), device, args.eps_list, args.steps_list,
            eps=args.at_eps, steps=args.at_steps, label=label, progress=not args.no_progress and dist.is_main,
            dist=dist,
        )  # fmt: skip
    if not dist.is_main:
        return 0
    # Without --out, every checkpoint's run gets the whole comparison, so each run's report shows it.
    files = [model_file(args, r) for r in resumes]
    outs = [Path(args.out)] if args.out else dict.fromkeys(f.resolve().parent / "robustness" for f in files)
    paths: list[Path] = []
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        paths += [*write_sweep(rows, out), plot_accuracy_vs_eps(rows, out / "accuracy_vs_eps.png"),
                  plot_accuracy_vs_steps(rows, out / "accuracy_vs_steps.png")]  # fmt: skip
    print(f"{'model':<24}{'sweep':<7}{'eps':>8}{'steps':>7}{'clean top-1':>13}{'robust top-1':>14}")
    for r in rows:
        print(f"{r['model']:<24}{r['sweep']:<7}{r['eps']:>8.4g}{r['steps']:>7}{r['clean_top1']:>13.2f}"
              f"{r['robust_top1']:>14.2f}")  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0
