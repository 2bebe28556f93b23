"""``visionlab certify``: certified L2 robustness of a model by randomized smoothing (Cohen, Rosenfeld & Kolter
2019), with :class:`visionlab.robustness.SmoothedClassifier`.

Takes any model the analysis commands take (a checkpoint, ``--model-arch``/``--weights`` or ``--model-factory``:
:mod:`visionlab.cli.model_flags`) and the first ``--limit-val`` validation images; runs CERTIFY on each (``--n0``
selection and ``--n`` estimation samples of Gaussian noise of std ``--sigma``, pixel units, confidence
``1 - --alpha``) and writes, next to the model by default (``RUN/certify/``, where ``visionlab report`` finds it):
``certify.json`` (settings, certified accuracy at ``--radii``, every image's row), ``certify.csv`` (one row per
image) and ``certified_accuracy.png`` (certified accuracy against radius). Prints the table (``--json``: one line).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from visionlab.cli.common import CLIError, check_options
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, load_model, model_file, model_label

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_RADII",
    "add_certify_command",
    "check_certify_options",
    "cmd_certify",
    "write_certification",
]

CSV_COLUMNS = ("index", "label", "prediction", "p_lower", "radius", "correct")
# visionlab.robustness.DEFAULT_RADII, spelt out so that `visionlab --help` does not import torch (a test keeps them
# equal).
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def add_certify_command(sub: argparse._SubParsersAction) -> None:
    """Register ``certify`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("certify", help="certified L2 accuracy by randomized smoothing (Cohen et al.): table, curve")
    p.add_argument("--resume", metavar="CKPT", help="checkpoint to load (best or last); or a model of the group below")
    p.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="where fashion-mnist is kept, for a checkpoint or --data on fashion-mnist")
    s = p.add_argument_group("randomized smoothing (L2, pixel units: images in [0, 1])")
    s.add_argument("--sigma", type=float, help="noise std, > 0 (required; certify with the --noise-sigma it was "
                   "trained with)")  # fmt: skip
    s.add_argument("--n0", type=int, default=100, help="selection samples per image (default 100)")
    s.add_argument("--n", type=int, default=10_000, help="estimation samples per image, >= --n0 (default 10000; "
                   "Cohen et al. 100000: larger radii, 10x the time)")  # fmt: skip
    s.add_argument("--alpha", type=float, default=0.001,
                   help="in (0, 1): each certificate fails with probability at most alpha (default 0.001)")  # fmt: skip
    s.add_argument("--batch", type=int,
                   help="noisy copies per forward pass, across images (default 128 on the CPU, where the "
                        "activations then stay in cache, 1000 on a GPU); results do not depend on it")  # fmt: skip
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    s.add_argument("--radii", type=float, nargs="+", default=list(DEFAULT_RADII), metavar="R",
                   help="L2 radii of the table, each >= 0 (default 0 0.25 0.5 0.75 1 1.25 1.5)")  # fmt: skip
    p.add_argument("--limit-val", type=int, default=500, metavar="N", help="first N images (default 500)")
    p.add_argument("-b", "--batch-size", type=int, default=100,
                   help="images certified per call (default 100); results do not depend on it")  # fmt: skip
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="DIR", help="where the tables and the figure go (default: next to the model)")
    p.add_argument("--json", action="store_true",
                   help='one JSON line {"sigma", "n0", "n", "alpha", "images", "abstained", "certified_accuracy", '
                        '"seconds"} (the per-image rows are in OUT/certify.json)')  # fmt: skip
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--no-progress", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=cmd_certify)


def check_certify_options(args: argparse.Namespace) -> None:
    """Refuse, before any model or data is read, a smoothing option out of range, naming its flag: ``--sigma``
    missing or <= 0, ``--n0``/``--n``/``--batch`` < 1, ``--n0`` > ``--n``, ``--alpha`` outside (0, 1), a
    negative ``--seed`` or radius."""
    from visionlab.engine.config import Range
    from visionlab.errors import ConfigError

    if args.sigma is None:
        raise CLIError("--sigma: required: the noise std in pixel units (e.g. 0.25; the --noise-sigma it trained with)")
    rules = (
        ("--sigma", Range(0, low_open=True, text="a number > 0 (pixel units)"), [args.sigma]),
        ("--n0", Range(1, integer=True), [args.n0]),
        ("--n", Range(1, integer=True), [args.n]),
        ("--alpha", Range(0, 1, low_open=True, high_open=True), [args.alpha]),
        ("--batch", Range(1, integer=True), [] if args.batch is None else [args.batch]),
        ("--seed", Range(0, integer=True), [args.seed]),
        ("--radii", Range(0, text="a number >= 0 (an L2 radius in pixel units)"), args.radii),
    )
    for flag, rule, values in rules:
        for value in values:
            try:
                rule.check(flag, value)
            except ConfigError as exc:
                raise CLIError(f"{flag}: {exc.message}") from None
    if args.n0 > args.n:
        raise CLIError(
            f"--n0: must be <= --n = {args.n} (selection takes fewer samples than estimation), got {args.n0}"
        )
    check_options(args, "limit_val")


def _certify_all(args: argparse.Namespace, model: Any, bundle: Any, device: Any) -> Any:
    """CERTIFY on the first ``--limit-val`` images, ``--batch-size`` images per call (each image's noise stream
    is fixed by its index, so the split does not change the result)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from visionlab.progress import progress
    from visionlab.robustness import Certification, SmoothedClassifier

    dataset = bundle.val
    if args.limit_val < len(dataset):
        dataset = Subset(dataset, range(args.limit_val))
    smoothed = SmoothedClassifier(model, bundle.num_classes, args.sigma, batch=args.batch, seed=args.seed)
    parts, first = [], 0
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    for images, labels in progress(loader, desc="certify", enabled=not args.no_progress):
        images = images.to(device)
        parts.append(smoothed.certify(images, torch.as_tensor(labels), args.n0, args.n, args.alpha, first_index=first))
        first += images.shape[0]
    return Certification.concat(parts)


def write_certification(result: dict[str, Any], cert: Any, out: Path, label: str) -> list[Path]:
    """``certify.json`` (``result``), ``certify.csv`` (one row per image) and ``certified_accuracy.png`` in
    ``out``."""
    from visionlab.robustness import plot_certified_accuracy

    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "certify.json", out / "certify.csv"
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(result["images_detail"])
    return [json_path, csv_path, plot_certified_accuracy({label: cert}, out / "certified_accuracy.png")]


def cmd_certify(args: argparse.Namespace) -> int:
    """Certified accuracy against L2 radius of the smoothed model: a table, certify.json/csv and a figure."""
    check_certify_options(args)
    check_model_flags(args)
    _, model, bundle, device = load_model(args, args.resume)
    started = time.perf_counter()
    cert = _certify_all(args, model, bundle, device)
    seconds = time.perf_counter() - started
    label = model_label(args, args.resume)
    result = {"model": label, **cert.to_dict(args.radii), "seconds": round(seconds, 3)}
    out = Path(args.out) if args.out else model_file(args, args.resume).parent / "certify"
    for path in write_certification(result, cert, out, label):
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "images_detail"}))
        return 0
    print(f"{label}: smoothed with σ = {args.sigma:g}, n0 = {args.n0}, n = {args.n}, α = {args.alpha:g} on "
          f"{result['images']} images ({result['abstained']} abstained) in {seconds:.1f} s")  # fmt: skip
    print(f"{'L2 radius':>10}{'certified top-1 %':>19}")
    for row in result["certified_accuracy"]:
        print(f"{row['radius']:>10.4g}{row['accuracy']:>19.2f}")
    return 0
