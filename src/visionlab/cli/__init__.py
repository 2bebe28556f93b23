"""``visionlab`` command line: train, eval, predict, compare, saliency, explain, attack, robustness, corruptions,
report, data fetch, models.

One module per command group, each registering its sub-commands (:mod:`~visionlab.cli.train`: train, compare;
:mod:`~visionlab.cli.evaluate`: eval, predict; :mod:`~visionlab.cli.analysis`: saliency, attack, robustness;
:mod:`~visionlab.cli.explain`; :mod:`~visionlab.cli.corruptions`; :mod:`~visionlab.cli.report`;
:mod:`~visionlab.cli.data`: data fetch, models), on two modules of shared helpers (:mod:`~visionlab.cli.common`,
:mod:`~visionlab.cli.model_flags`); :mod:`~visionlab.cli.docs` writes docs/CLI.md.
This module builds the parser and runs a command, turning errors into one line and an exit status.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence

from visionlab.cli.analysis import add_analysis_commands
from visionlab.cli.certify import add_certify_command
from visionlab.cli.common import FIELD_FLAGS, CLIError, check_data_flags, format_user_error, reads_data_root
from visionlab.cli.corruptions import add_corruptions_command
from visionlab.cli.data import add_data_commands
from visionlab.cli.evaluate import add_evaluate_commands
from visionlab.cli.explain import add_explain_command
from visionlab.cli.report import add_report_command
from visionlab.cli.train import add_compare_command, add_train_command, train_config_from_args
from visionlab.errors import UserError

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


def build_parser() -> argparse.ArgumentParser:
    """The ``visionlab`` parser with every command registered (docs/CLI.md is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="visionlab",
        description="train, evaluate and predict with image classifiers; compare, explain, attack and report on "
        "them (docs/CLI.md lists every option)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_command(sub)
    add_evaluate_commands(sub)
    add_compare_command(sub)
    add_data_commands(sub)
    add_analysis_commands(sub)
    add_explain_command(sub)
    add_corruptions_command(sub)
    add_certify_command(sub)
    add_report_command(sub)
    return parser


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
