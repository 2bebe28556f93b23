"""``visionlab data fetch``, ``visionlab data synth`` and ``visionlab models``: what a run can be made of — the
datasets visionlab fetches or makes and the models it registers."""

from __future__ import annotations

import argparse

from visionlab.cli.common import CLIError, format_user_error

__all__ = ["add_data_commands", "cmd_data_fetch", "cmd_data_synth", "cmd_models"]

# The synth command's options, for errors about the library's arguments (visionlab.data.synth_miniplaces).
SYNTH_FLAGS = {"root": "--root", "train": "--train", "val": "--val", "classes": "--classes", "seed": "--seed",
               "quality": "--quality", "workers": "-j/--workers"}  # fmt: skip


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
    _add_synth_command(data_sub)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)


def _add_synth_command(data_sub: argparse._SubParsersAction) -> None:
    s = data_sub.add_parser(
        "synth",
        help="write a synthetic MiniPlaces (real size, layout and JPEG format; seeded, learnable classes)",
        description="Writes ROOT/images/{train,val}/..., train.txt, val.txt and categories.txt as the real "
        "MiniPlaces has them: 128x128 RGB JPEGs (4.4 KB on average at the default quality 90; the real set's "
        "are a few KB each), each class a seeded procedural scene seen under a random view, colour change, "
        "distractors and noise. Train on it with visionlab train --data miniplaces:ROOT. The files are the same "
        "for any -j; the lists are written last, and running the command again with the same settings completes "
        "a killed run. "
        "A non-empty ROOT that is not such a set is refused.",
    )
    s.add_argument("dataset", choices=("miniplaces",))
    s.add_argument("--root", required=True, help="the folder to write (new, empty, or an earlier synth of the "
                   "same settings)")  # fmt: skip
    s.add_argument("--train", type=int, default=100_000, help="training images (default 100000, the real set's)")
    s.add_argument("--val", type=int, default=10_000, help="validation images (default 10000, the real set's)")
    s.add_argument("--classes", type=int, default=100, help="classes, 1-100 (default 100); at most --train")
    s.add_argument("--seed", type=int, default=0, help="seed of every class and image (default 0)")
    s.add_argument("--quality", type=int, default=None, metavar="Q",
                   help="JPEG quality 1-100 (default 90: 4.4 KB a file on average; 75: 2.4 KB)")  # fmt: skip
    s.add_argument("-j", "--workers", type=int, default=1, help="processes rendering and encoding (default 1)")
    s.add_argument("--no-progress", action="store_true", help="no progress display")
    s.set_defaults(func=cmd_data_synth)


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


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Write a synthetic MiniPlaces; print where it is and how many images this run wrote."""
    from visionlab.data import synth_miniplaces
    from visionlab.data.synth import SYNTH_QUALITY
    from visionlab.errors import ConfigError

    try:
        root, written = synth_miniplaces(
            args.root, train=args.train, val=args.val, classes=args.classes, seed=args.seed,
            quality=SYNTH_QUALITY if args.quality is None else args.quality, workers=args.workers,
            show_progress=not args.no_progress,
        )  # fmt: skip
    except ConfigError as exc:
        raise CLIError(format_user_error(exc, SYNTH_FLAGS)) from exc
    print(f"{root}: {args.train} train / {args.val} val images ({written} written now); train on it with "
          f"--data miniplaces:{root}")  # fmt: skip
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print every registered model name with its one-line summary."""
    from visionlab.models import list_models

    for name, summary in list_models().items():
        print(f"{name:12s} {summary}")
    return 0
