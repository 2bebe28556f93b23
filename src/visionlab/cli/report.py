"""``visionlab report RUN_DIR [RUN_DIR ...] [--out report.html]``: one self-contained HTML page of one or more
runs (see :mod:`visionlab.report.sections` for what it shows and where each part comes from).

Each run's checkpoint is loaded and its validation data built as ``visionlab eval`` does (the checkpoint's
dataset, ``--data-root``, ``--limit-val``); a run whose checkpoint or data cannot be loaded still gets a report,
whose model sections say why and what to do.

``visionlab report --model-arch NAME --weights FILE --data SPEC`` (or ``--model-factory FILE.py:FUNCTION``): the
page of a model from outside visionlab — its evaluation, predictions and saliency, and the attack, saliency and
robustness files that ``visionlab attack/saliency/robustness`` wrote next to its weights (or factory) file. It has
no training, so no configuration or training curves; any failure to load it is an error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from visionlab.cli.common import CLIError, check_options, reads_data_root
from visionlab.cli.model_flags import add_model_arguments, check_model_flags, foreign_flags, load_model, model_file

__all__ = ["add_report_command", "cmd_report"]


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("report", help="one self-contained HTML page of one or more runs (open it in any browser)")
    p.add_argument(
        "runs", nargs="*", metavar="RUN_DIR",
        help="run directories (visionlab train --out DIR); none with --model-arch or --model-factory",
    )  # fmt: skip
    p.add_argument("-o", "--out", default="report.html", metavar="FILE", help="the page to write (default report.html)")
    p.add_argument("--data-root",
                   help="where fashion-mnist is kept, for the runs on fashion-mnist (default: the run's, "
                        "$VISIONLAB_DATA or ./data)")  # fmt: skip
    p.add_argument("--limit-val", type=int, metavar="N", help="evaluate only the first N validation images")
    p.add_argument("--num", type=int, default=20, help="validation images shown with their top-5 (default 20)")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--no-check-images", action="store_true", help="skip verifying every image file up front")
    p.add_argument("--screenshot", metavar="PNG", help="also save the page's top 1280x1600 px (needs chromium)")
    add_model_arguments(p, with_data=True)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Read the runs (or load the foreign model), evaluate each checkpoint, write the page."""
    from visionlab.engine.config import Range
    from visionlab.report import build_report, load_runs, write_page

    check_options(args, "batch_size", "limit_val", "device")
    Range(1, integer=True).check("num", args.num)
    if args.model_arch is not None or args.model_factory is not None:
        runs, analyses = _foreign_report(args)
    else:
        if not args.runs:
            raise CLIError("RUN_DIR: give one or more run directories (or --model-arch / --model-factory)")
        check_model_flags(argparse.Namespace(**{**vars(args), "resume": args.runs}))  # no foreign-model flag
        if args.data is not None:
            raise CLIError("--data: only with --model-arch / --model-factory (each run evaluates on its own dataset)")
        runs = load_runs(args.runs)  # every directory checked before any model is loaded
        if args.data_root is not None and not any(reads_data_root(run.config.get("data", "")) for run in runs):
            raise CLIError(
                "--data-root: none of these runs reads fashion-mnist from a data root (each names its folder)"
            )
        analyses = {run.path: _analyse(run, run.checkpoint, args) for run in runs if run.checkpoint is not None}
    out = write_page(build_report(runs, analyses), args.out)
    print(f"wrote {out.resolve()}")
    print(f"open it in any browser, e.g. xdg-open {out} (it needs no network)")
    if args.screenshot:
        print(f"wrote {_screenshot(out, Path(args.screenshot))}")
    return 0


def _foreign_report(args: argparse.Namespace) -> tuple[list[Any], dict[Path, Any]]:
    """The one run of a foreign model: the folder of its weights (or factory) file, where the analysis commands
    write, with no configuration or records; and its analysis (a load failure is an error, exit 2)."""
    from visionlab.engine import limit
    from visionlab.report import Run, analyse

    if args.runs:
        raise CLIError(
            f"RUN_DIR: not with {'--model-arch' if args.model_arch else '--model-factory'} (the report of that model "
            "reads the analysis files next to its weights or factory file)"
        )
    check_model_flags(argparse.Namespace(**{**vars(args), "resume": None}))
    _, model, bundle, device = load_model(args, None)
    source = model_file(args, None)
    run = Run(path=source.parent, label=args.model_arch or args.model_factory, config={}, records=[],
              model_flags=foreign_flags(args))  # fmt: skip
    found = analyse(
        model, limit(bundle.val, args.limit_val), bundle.class_names, device, checkpoint=source,
        batch_size=args.batch_size, num_images=args.num, with_saliency=run.file("saliency", "saliency.png") is None,
    )  # fmt: skip
    return [run], {run.path: found}


def _analyse(run: Any, checkpoint: Path, args: argparse.Namespace) -> Any:
    """What the report computes from ``checkpoint``, or the message saying why it could not."""
    from visionlab.engine import limit
    from visionlab.errors import UserError
    from visionlab.report import analyse

    namespace = argparse.Namespace(**{**vars(args), "data": None})
    try:
        state, model, bundle, device = load_model(namespace, str(checkpoint), strict=False)
    except UserError as exc:  # the checkpoint or its data cannot be read: the rest of the report still can
        print(f"[visionlab] note: {checkpoint}: {exc} (its model sections say so)", file=sys.stderr)
        return str(exc)
    names = state.get("class_names") or bundle.class_names
    return analyse(
        model, limit(bundle.val, args.limit_val), names, device, checkpoint=checkpoint,
        batch_size=args.batch_size, num_images=args.num, with_saliency=run.file("saliency", "saliency.png") is None,
    )  # fmt: skip


def _screenshot(page: Path, out: Path) -> Path:
    """The top 1280x1600 px of ``page`` rendered by headless Chromium, as a PNG file at ``out``."""
    from visionlab.report.browser import Chromium

    with Chromium(width=1280, height=1600) as browser:
        browser.open(page)
        png = browser.screenshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return out
