"""The ``corruptions`` command: accuracy under ImageNet-C's 15 common corruptions at severities 1-5.

Loads any model the analysis commands take (:mod:`visionlab.cli.model_flags`), corrupts the validation images on
the fly, image by image from ``--seed`` (:mod:`visionlab.robustness.corruptions`), and writes
``corruptions/corruptions.csv``, ``corruptions.json`` and the heat map ``corruptions.png`` next to the model, where
``visionlab report`` finds them; ``--baseline CKPT`` adds ImageNet-C's corruption error (mCE) relative to that
model, evaluated on the same images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from visionlab.cli.common import CLIError, check_options
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_model, model_file, model_label

__all__ = ["add_corruptions_command", "cmd_corruptions", "parse_corruptions", "parse_severities"]


def add_corruptions_command(sub: argparse._SubParsersAction) -> None:
    """Register ``corruptions`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("corruptions", help="accuracy under the 15 common corruptions (ImageNet-C) × severities 1-5; "
                       "mCE against a baseline; CSV, JSON, heat map")  # fmt: skip
    p.add_argument("--resume", metavar="CKPT", help="checkpoint to load (best or last); or a model of the group below")
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
                   help="processes corrupting images (DataLoader workers; default 0: this process)")  # fmt: skip
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="DIR", help="where the table and heat map go (default: next to the checkpoint)")
    p.add_argument("--json", action="store_true",
                   help="print corruptions.json as one line instead of the table")  # fmt: skip
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
    if args.baseline is not None and not Path(args.baseline).is_file():
        raise CLIError(f"--baseline: {args.baseline}: no such checkpoint file")
    return corruptions, severities


def _evaluate(model: Any, bundle: Any, device: Any, args: argparse.Namespace, settings: tuple) -> dict[str, Any]:
    from torch.utils.data import Subset

    from visionlab.robustness import corruption_accuracy

    data = bundle.val
    if args.limit_val is not None and args.limit_val < len(data):
        data = Subset(data, range(args.limit_val))
    corruptions, severities = settings
    return corruption_accuracy(
        model, data, corruptions, severities, seed=args.seed, device=device, batch_size=args.batch_size,
        workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip


def _baseline(args: argparse.Namespace, state: dict[str, Any] | None, settings: tuple) -> dict[str, Any]:
    """The baseline checkpoint's result on the model's data (``--data``, else the model checkpoint's dataset)."""
    stored = state["config"] if state is not None else {}
    data = args.data or stored.get("data")
    view = argparse.Namespace(**{**vars(args), "data": data, "data_root": args.data_root or stored.get("data_root")})
    _, model, bundle, device = load_model(view, args.baseline, strict=False)
    return {"model": model_label(args, args.baseline), **_evaluate(model, bundle, device, args, settings)}


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


def cmd_corruptions(args: argparse.Namespace) -> int:
    """Top-1 under each corruption × severity: printed, written to OUT/corruptions.{csv,json,png}."""
    from visionlab.robustness import corruption_errors, plot_corruption_heatmap, write_corruptions

    settings = _check(args)
    state, model, bundle, device = load_model(args, args.resume)
    label = model_label(args, args.resume)
    result: dict[str, Any] = {"model": label, **_evaluate(model, bundle, device, args, settings)}
    if args.baseline is not None:
        result["baseline"] = _baseline(args, state, settings)
        result.update(corruption_errors(result, result["baseline"]))
    out = Path(args.out) if args.out else model_file(args, args.resume).parent / "corruptions"
    paths = [*write_corruptions(result, out, label), plot_corruption_heatmap(result, out / "corruptions.png")]
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0
