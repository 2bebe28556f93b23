"""The ``corruptions`` command: accuracy under ImageNet-C's 15 common corruptions at severities 1-5.

Loads any model the analysis commands take (:mod:`visionlab.cli.model_flags`), or several checkpoints
(``--resume A B C``), corrupts the validation images on the fly, image by image from ``--seed``
(:mod:`visionlab.robustness.corruptions`), and writes ``corruptions/corruptions.csv``, ``corruptions.json`` and the
heat map ``corruptions.png`` next to each model, where ``visionlab report`` finds them; ``--baseline CKPT`` adds
ImageNet-C's corruption error (mCE) relative to that model, evaluated on the same images.

Corrupting the images is the cost (the models' forward passes are cheap beside it), so every model — and the
baseline, when it takes the same images — is evaluated on each corrupted batch as it is made
(:func:`~visionlab.robustness.corruption_accuracies`): k checkpoints cost about one; and ``-j N`` makes the batches
in N processes, ahead of the forward passes, for any dataset (Fashion-MNIST and CIFAR-10, held in memory, too) —
the same images and numbers for any N. They must take the same
images (dataset, channels, side, classes, and the conversion ``eval`` applies when the dataset's images differ);
the data is read once, as the first checkpoint reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from visionlab.cli.common import CLIError, check_options, load_model_checkpoint
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_model, model_file, model_label

__all__ = ["add_corruptions_command", "cmd_corruptions", "parse_corruptions", "parse_severities"]


def add_corruptions_command(sub: argparse._SubParsersAction) -> None:
    """Register ``corruptions`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("corruptions", help="accuracy under the 15 common corruptions (ImageNet-C) × severities 1-5; "
                       "mCE against a baseline; CSV, JSON, heat map")  # fmt: skip
    p.add_argument("--resume", nargs="+", metavar="CKPT",
                   help="checkpoint(s) to load (best or last); several are evaluated on the same corrupted images, "
                        "made once, and must take the same images; or one model of the group below")  # fmt: skip
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    p.add_argument("--corruptions", nargs="+", metavar="NAME",
                   help="corruptions, space- or comma-separated: names (gaussian_noise, ..., jpeg_compression), "
                        "families (noise, blur, weather, digital) or all (default)")  # fmt: skip
    p.add_argument("--severities", nargs="+", metavar="S",
                   help="severities in 1-5: a range (1-5, the default) or a list (1 3 5, or 1,3,5)")  # fmt: skip
    p.add_argument("--limit-val", type=int, metavar="N", help="the first N validation images (default: all)")
    p.add_argument("--baseline", metavar="CKPT",
                   help="a visionlab checkpoint whose errors normalize the corruption errors (ImageNet-C's mCE, "
                        "AlexNet's role there), evaluated on the same corrupted images")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted images (default 0)")
    p.add_argument("-b", "--batch-size", type=int, default=250, help="images per batch (default 250)")
    p.add_argument("-j", "--workers", type=int, default=0,
                   help="processes corrupting images ahead of the models, for any dataset (Fashion-MNIST and "
                        "CIFAR-10 in memory too); the same result for any N (default 0: this process)")  # fmt: skip
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="DIR",
                   help="where the table and heat map go (default: next to the checkpoint; several checkpoints: "
                        "DIR/LABEL each)")  # fmt: skip
    p.add_argument("--json", action="store_true",
                   help='print corruptions.json as one line instead of the table (several checkpoints: '
                        '{"models": [each one\'s corruptions.json]})')  # fmt: skip
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=cmd_corruptions)


def _parts(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def parse_corruptions(values: list[str] | None) -> tuple[str, ...]:
    """The corruptions named by ``--corruptions`` (names, families or ``all``), each once, in ImageNet-C's order
    within a family; default all 15. Raises :class:`CLIError` naming the flag and listing the names."""
    from visionlab.robustness import CORRUPTION_FAMILIES, CORRUPTIONS

    parts = _parts(values)
    names: list[str] = []
    for part in parts or ["all"]:
        if part == "all":
            names += CORRUPTIONS
        elif part in CORRUPTION_FAMILIES:
            names += CORRUPTION_FAMILIES[part]
        elif part in CORRUPTIONS:
            names.append(part)
        else:
            raise CLIError(
                f"--corruptions: unknown corruption {part!r}; the corruptions are {', '.join(CORRUPTIONS)} (or a "
                f"family: {', '.join(CORRUPTION_FAMILIES)}, or all)"
            )
    return tuple(dict.fromkeys(names))


def parse_severities(values: list[str] | None) -> tuple[int, ...]:
    """The severities of ``--severities``: ranges ``A-B`` and single values, each in 1-5; default 1-5."""
    from visionlab.robustness import SEVERITIES

    severities: list[int] = []
    for part in _parts(values) or ["1-5"]:
        low, dash, high = part.partition("-")
        try:
            span = list(range(int(low), int(high) + 1)) if dash else [int(low)]
        except ValueError:
            raise CLIError(f"--severities: {part!r} is not a severity in 1-5 or a range such as 1-5") from None
        bad = [s for s in span if s not in SEVERITIES] or ([] if span else [part])
        if bad:
            raise CLIError(f"--severities: severities are 1-5 (ImageNet-C's), got {bad[0]}")
        severities += span
    return tuple(dict.fromkeys(severities))


def _check(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Every flag checked before a model is read; returns the corruptions and severities."""
    from visionlab.checks import check_integer

    check_options(args, "limit_val")
    corruptions, severities = parse_corruptions(args.corruptions), parse_severities(args.severities)
    check_integer(args.seed, "seed", minimum=0)
    check_integer(args.workers, "workers", minimum=0)
    check_model_flags(args)
    missing = [r for r in args.resume or [] if not Path(r).is_file()]
    if len(args.resume or []) > 1 and missing:  # one checkpoint: load_model says so
        raise CLIError(f"--resume: {missing[0]}: checkpoint not found")
    if args.baseline is not None and not Path(args.baseline).is_file():
        raise CLIError(f"--baseline: {args.baseline}: no such checkpoint file")
    return corruptions, severities


class _Model(NamedTuple):
    """A model to evaluate: its name in tables, the file its outputs go next to, the network, its checkpoint."""

    label: str
    file: Path
    network: Any
    state: dict[str, Any] | None


def _images(spec: str, bundle: Any, state: dict[str, Any] | None) -> tuple:
    """What a model is fed from the dataset ``spec`` loaded as ``bundle``: ``(spec, channels, side, classes,
    recipe of the conversion or None)`` — a checkpoint's as :func:`~visionlab.cli.common.eval_data` makes them (the
    dataset converted with its recipe's evaluation transform when its images are not what the checkpoint takes);
    a foreign model's, the dataset's own."""
    if state is None:
        return spec, bundle.in_channels, bundle.image_size, bundle.num_classes, None
    margs = state["model_args"]
    takes = (margs["in_channels"], margs["image_size"])
    converted = takes != (bundle.in_channels, bundle.image_size)
    return spec, *takes, margs["num_classes"], state.get("recipe", "miniplaces") if converted else None


def _describe(images: tuple) -> str:
    spec, channels, side, classes, recipe = images
    converted = f", converted by the {recipe} recipe's evaluation transform" if recipe else ""
    return f"{channels}-channel {side}x{side} images of {spec} ({classes} classes{converted})"


def _labels(args: argparse.Namespace, resumes: list[str | None]) -> list[str]:
    """Each model's name in tables (:func:`model_label`); ``RUN/FILE`` where two share a run directory."""
    labels = [model_label(args, r) for r in resumes]
    if len(set(labels)) < len(labels):
        labels = [f"{label}/{Path(r).name}" if r else label for label, r in zip(labels, resumes, strict=True)]
    if len(set(labels)) < len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise CLIError(f"--resume: {twice} given twice")
    return labels


def _load_models(args: argparse.Namespace) -> tuple[list[_Model], Any, Any]:
    """``(models, dataset bundle, device)``: the first model with its data (:func:`load_model`), then each further
    checkpoint, refused unless it takes the same images (one line naming ``--resume``)."""
    from visionlab.engine import model_from_checkpoint

    resumes: list[str | None] = list(args.resume or [None])  # None: the one model of --model-arch / --model-factory
    labels = _labels(args, resumes)
    # -j corrupts images here, for data held in memory too: what load_model refuses for commands whose workers load.
    state, network, bundle, device = load_model(argparse.Namespace(**{**vars(args), "workers": None}), resumes[0])
    models = [_Model(labels[0], model_file(args, resumes[0]), network, state)]
    first = _images(args.data or state["config"]["data"], bundle, state) if state else None
    for resume, label in zip(resumes[1:], labels[1:], strict=True):
        other = load_model_checkpoint(resume)
        images = _images(args.data or other["config"]["data"], bundle, other)
        if images != first:
            raise CLIError(
                f"--resume: {resume} takes {_describe(images)}, but {resumes[0]} takes {_describe(first)}; "
                "checkpoints evaluated together must take the same images (run them one at a time)"
            )
        models.append(_Model(label, Path(resume), model_from_checkpoint(other, device).eval(), other))
    return models, bundle, device


def _evaluate(models: dict[str, Any], bundle: Any, device: Any, args: argparse.Namespace, settings: tuple) -> dict:
    """:func:`~visionlab.robustness.corruption_accuracies` of ``models`` on ``bundle``'s validation images
    (the first ``--limit-val``)."""
    from torch.utils.data import Subset

    from visionlab.robustness import corruption_accuracies

    data = bundle.val
    if args.limit_val is not None and args.limit_val < len(data):
        data = Subset(data, range(args.limit_val))
    corruptions, severities = settings
    return corruption_accuracies(
        models, data, corruptions, severities, seed=args.seed, device=device, batch_size=args.batch_size,
        workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip


def _baseline_view(args: argparse.Namespace, first: _Model) -> argparse.Namespace:
    """``args`` as the baseline reads them: the models' data (``--data``, else the first checkpoint's dataset)."""
    stored = first.state["config"] if first.state is not None else {}
    data = args.data or stored.get("data")
    return argparse.Namespace(**{**vars(args), "data": data, "data_root": args.data_root or stored.get("data_root")})


def _shared_baseline(args: argparse.Namespace, models: list[_Model], bundle: Any, device: Any) -> _Model | None:
    """The ``--baseline`` checkpoint as a model evaluated with the others, when it takes their images; else None
    (it is then evaluated on its own data by :func:`_separate_baseline`)."""
    from visionlab.engine import model_from_checkpoint

    first = models[0]
    view = _baseline_view(args, first)
    state = load_model_checkpoint(args.baseline)
    first_images = _images(view.data, bundle, first.state)
    if _images(view.data, bundle, state) != first_images:
        return None
    network = model_from_checkpoint(state, device).eval()
    return _Model(model_label(args, args.baseline), Path(args.baseline), network, state)


def _separate_baseline(args: argparse.Namespace, first: _Model, settings: tuple) -> dict[str, Any]:
    """The baseline checkpoint's result on the models' data converted to what it takes, corrupted again."""
    _, network, bundle, device = load_model(_baseline_view(args, first), args.baseline, strict=False)
    return {"model": model_label(args, args.baseline), **_evaluate({"b": network}, bundle, device, args, settings)["b"]}


def _results(args: argparse.Namespace, settings: tuple) -> tuple[list[_Model], list[dict[str, Any]]]:
    """Each model's result (with ``"model": label``), and with ``--baseline`` its ``"baseline"`` result and the
    corruption errors relative to it (:func:`~visionlab.robustness.corruption_errors`)."""
    from visionlab.robustness import corruption_errors

    models, bundle, device = _load_models(args)
    baseline = _shared_baseline(args, models, bundle, device) if args.baseline is not None else None
    evaluated = {str(k): m.network for k, m in enumerate(models)}
    if baseline is not None:
        evaluated["baseline"] = baseline.network
    accuracies = _evaluate(evaluated, bundle, device, args, settings)
    results = [{"model": m.label, **accuracies[str(k)]} for k, m in enumerate(models)]
    if args.baseline is not None:
        base = {"model": baseline.label, **accuracies["baseline"]} if baseline else None
        base = base or _separate_baseline(args, models[0], settings)
        for result in results:
            result["baseline"] = base
            result.update(corruption_errors(result, base))
    return models, results


def _print_table(result: dict[str, Any]) -> None:
    severities = result["severities"]
    ce = result.get("ce")
    print(f"{result['model']}: top-1 % under corruption, {result['n']} images, seed {result['seed']}")
    header = f"{'corruption':<20}" + "".join(f"{s:>7}" for s in severities) + f"{'mean':>8}"
    print(header + (f"{'CE':>8}" if ce else ""))
    for c in result["corruptions"]:
        row = result["top1"][c]
        line = f"{c:<20}" + "".join(f"{a:>7.2f}" for a in row) + f"{sum(row) / len(row):>8.2f}"
        print(line + (f"{'—' if ce[c] is None else f'{ce[c]:.1f}':>8}" if ce else ""))
    print(f"* clean {result['clean_top1']:.2f}, mean under corruption {result['mean_corruption_top1']:.2f}")
    if "baseline" in result:
        mce, rel = (("—" if result[k] is None else f"{result[k]:.1f}") for k in ("mce", "relative_mce"))
        print(f"* mCE {mce}, relative mCE {rel} (%, baseline {result['baseline']['model']} = 100)")


def _print_comparison(results: list[dict[str, Any]]) -> None:
    """One column per model: clean top-1, each corruption's mean over the severities, their mean, and the mCE."""
    first = results[0]
    width = max(9, *(len(r["model"]) + 2 for r in results))
    severities = ", ".join(map(str, first["severities"]))
    print(f"top-1 % (mean over severities {severities}), {first['n']} images, seed {first['seed']}")
    print(f"{'corruption':<20}" + "".join(f"{r['model']:>{width}}" for r in results))
    rows = [("clean", [r["clean_top1"] for r in results])]
    rows += [(c, [sum(r["top1"][c]) / len(r["top1"][c]) for r in results]) for c in first["corruptions"]]
    rows += [("mean", [r["mean_corruption_top1"] for r in results])]
    if "baseline" in first:
        rows += [(name, [r[key] for r in results]) for name, key in (("mCE", "mce"), ("relative mCE", "relative_mce"))]
    for name, values in rows:
        print(f"{name:<20}" + "".join(f"{'—' if v is None else f'{v:.2f}':>{width}}" for v in values))
    if "baseline" in first:
        print(f"* mCE and relative mCE in %, baseline {first['baseline']['model']} = 100")
    print("* each model's table by severity: its corruptions.csv")


def cmd_corruptions(args: argparse.Namespace) -> int:
    """Top-1 under each corruption × severity: printed, written to OUT/corruptions.{csv,json,png} of each model."""
    from visionlab.robustness import plot_corruption_heatmap, write_corruptions

    settings = _check(args)
    models, results = _results(args, settings)
    for model, result in zip(models, results, strict=True):
        out = model.file.parent / "corruptions"
        if args.out:
            out = Path(args.out) / model.label if len(models) > 1 else Path(args.out)
        paths = [*write_corruptions(result, out, model.label), plot_corruption_heatmap(result, out / "corruptions.png")]
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"models": results}))
    elif len(results) == 1:
        _print_table(results[0])
    else:
        _print_comparison(results)
    return 0
