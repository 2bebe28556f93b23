"""``visionlab data fetch`` and ``visionlab models``: what a run can be made of — the datasets visionlab fetches
and the models it registers."""

from __future__ import annotations

import argparse

from visionlab.cli.common import CLIError

__all__ = ["add_data_commands", "cmd_data_fetch", "cmd_models"]


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``data`` (with its ``fetch`` sub-command) and ``models`` on the ``visionlab`` sub-command parser."""
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


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Download, verify and unpack a dataset; print where it is."""
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
    """Print every registered model name with its one-line summary."""
    from visionlab.models import list_models

    for name, summary in list_models().items():
        print(f"{name:12s} {summary}")
    return 0
