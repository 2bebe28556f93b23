"""``visionlab report RUN_DIR [RUN_DIR ...] [--out report.html]``: one self-contained HTML page of one or more
runs (see :mod:`visionlab.report.sections` for what it shows and where each part comes from).

Each run's checkpoint is loaded and its validation data built as ``visionlab eval`` does (the checkpoint's
dataset, ``--data-root``, ``--limit-val``); a run whose checkpoint or data cannot be loaded still gets a report,
whose model sections say why and what to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_report_command", "cmd_report"]


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``visionlab`` sub-command parser."""
    p = sub.add_parser("report", help="one self-contained HTML page of one or more runs (open it in any browser)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (visionlab train --out DIR)")
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
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from visionlab.cli import CLIError, _check_options, reads_data_root
    from visionlab.engine.config import Range
    from visionlab.report import build_report, load_runs, write_page

    _check_options(args, "batch_size", "limit_val", "device")
    Range(1, integer=True).check("num", args.num)
    runs = load_runs(args.runs)  # every directory checked before any model is loaded
    if args.data_root is not None and not any(reads_data_root(run.config.get("data", "")) for run in runs):
        raise CLIError("--data-root: none of these runs reads fashion-mnist from a data root (each names its folder)")
    analyses: dict[Path, Any] = {}
    for run in runs:
        if run.checkpoint is not None:
            analyses[run.path] = _analyse(run, run.checkpoint, args)
    out = write_page(build_report(runs, analyses), args.out)
    print(f"wrote {out.resolve()}")
    print(f"open it in any browser, e.g. xdg-open {out} (it needs no network)")
    if args.screenshot:
        print(f"wrote {_screenshot(out, Path(args.screenshot))}")
    return 0


def _analyse(run: Any, checkpoint: Path, args: argparse.Namespace) -> Any:
    """What the report computes from ``checkpoint``, or the message saying why it could not."""
    from visionlab.cli_analysis import _load
    from visionlab.engine import limit
    from visionlab.errors import UserError
    from visionlab.report import analyse

    namespace = argparse.Namespace(**{**vars(args), "data": None})
    try:
        state, model, bundle, device = _load(namespace, str(checkpoint), strict=False)
    except UserError as exc:  # the checkpoint or its data cannot be read: the rest of the report still can
        print(f"[visionlab] note: {checkpoint}: {exc} (its model sections say so)", file=sys.stderr)
        return str(exc)
    names = state.get("class_names") or bundle.class_names
    return analyse(
        model, limit(bundle.val, args.limit_val), names, device, checkpoint=checkpoint,
        batch_size=args.batch_size, num_images=args.num, with_saliency=run.file("saliency", "saliency.png") is None,
    )  # fmt: skip


def _screenshot(page: Path, out: Path) -> Path:
    from visionlab.report.browser import Chromium

    with Chromium(width=1280, height=1600) as browser:
        browser.open(page)
        png = browser.screenshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return out
