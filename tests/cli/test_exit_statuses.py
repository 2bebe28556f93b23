"""``visionlab.cli.main`` and ``run``: how a command ends and its exit status (its own, 2 for a user error or a
missing command, 1 for a bug, 3 for a diverged run, 141 for a closed pipe) and the one line it prints, under the
prog and flag names a front end (``main.py``) gives."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

import pytest

from visionlab import cli
from visionlab.cli import main, run


def test_main_speaks_in_the_prog_and_flags_it_is_given(capsys) -> None:
    """main.py's name and flag spellings reach the error line."""
    assert main(["train", "--epochs", "0"], prog="front", flags={"epochs": "-E"}) == 2
    assert capsys.readouterr().err == "front: error: -E: must be an integer >= 1, got 0\n"


def test_a_command_is_required(capsys) -> None:
    """No command is a usage error naming the commands."""
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith("visionlab: error: the following arguments are required: command\n")
    with pytest.raises(SystemExit):
        main(["data"])
    assert capsys.readouterr().err.endswith("error: the following arguments are required: data_command\n")


def test_run_returns_the_commands_status_and_leaves_the_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command's own status comes back; an initialised process group is destroyed afterwards, also on error."""
    import torch.distributed as dist

    destroyed: list[bool] = []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    assert run(lambda args: 7, argparse.Namespace()) == 7
    assert run(lambda args: {}["x"], argparse.Namespace()) == 1
    assert destroyed == [True, True]
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    assert run(lambda args: 0, argparse.Namespace()) == 0
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "is_available", lambda: False)
    assert run(lambda args: 0, argparse.Namespace()) == 0
    assert destroyed == [True, True]


@pytest.mark.parametrize(
    "code",
    [errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
     errno.ENAMETOOLONG],
)  # fmt: skip
def test_each_environment_os_error_is_one_line(code: int, capsys) -> None:
    """Every errno of the machine or the paths given is a user error: exit 2, file and reason."""

    def fail(args: argparse.Namespace) -> int:
        raise OSError(code, "why", "/p")

    assert run(fail, argparse.Namespace(), prog="p") == 2
    assert capsys.readouterr().err == "p: error: /p: why\n"


def test_an_internal_error_names_the_prog(capsys) -> None:
    """A bug: the traceback, then the report request under the given prog."""
    assert run(lambda args: 1 / 0, argparse.Namespace(), prog="main.py") == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and "ZeroDivisionError: division by zero\n" in err
    assert err.endswith("main.py: internal error (a bug in visionlab): please report it with the traceback above\n")


def test_an_unexpected_os_error_is_a_bug_of_the_given_prog(capsys) -> None:
    """An OSError of no environment errno is a bug reported under the given prog."""

    def fail(args: argparse.Namespace) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x")

    assert run(fail, argparse.Namespace(), prog="main.py") == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError: [Errno 2] No such file: '/x'\n" in err
    assert err.endswith("\nmain.py: internal error (a bug in visionlab): please report it with the traceback above\n")


def test_a_diverged_run_uses_the_given_flags(capsys) -> None:
    """The divergence advice speaks in the flags table handed to run."""
    from visionlab.engine import TrainingDiverged

    def diverge(args: argparse.Namespace) -> int:
        raise TrainingDiverged("loss is nan")

    flags = {"lr": "-L", "warmup": "-W", "clip_grad": "-C"}
    assert run(diverge, argparse.Namespace(), prog="p", flags=flags) == 3
    assert capsys.readouterr().err == "p: training diverged: loss is nan. Lower -L, raise -W or keep -C above 0.\n"


def test_a_closed_pipe_points_stdout_at_devnull(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After a broken pipe, stdout's descriptor is /dev/null, so the final flush cannot fail again."""
    target = open(tmp_path / "out", "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", target)

    def pipe(args: argparse.Namespace) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    try:
        assert run(pipe, argparse.Namespace()) == 141
        target.write("lost")
        target.flush()
    finally:
        target.close()
    assert (tmp_path / "out").read_text() == ""


def test_silencing_a_captured_stdout_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stdout without a descriptor (captured) is left alone."""
    import io

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    cli._silence_stdout()
    assert sys.stdout is buffer
