"""Progress output: a line per interval (hand-driven clock) when not on a terminal, nothing when off, tqdm on a
terminal; and the trainer's ``quiet`` / ``progress`` settings end to end."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from visionlab.progress import LineProgress, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_interval_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(range(10), desc="epoch 1/3", stream=out, interval=10.0, clock=clock)
    for i in bar:
        clock.now += 4.0  # 4 s per item: lines after items 3 (12 s), 6 (24 s) and 9 (36 s), then the end
        if i == 5:
            bar.set_postfix(loss="0.512", top1="81.2")
    lines = out.getvalue().splitlines()
    assert lines == [
        "epoch 1/3: 3/10 (30%) 12s, ~28s left",
        "epoch 1/3: 6/10 (60%) 24s, ~16s left, loss=0.512, top1=81.2",
        "epoch 1/3: 9/10 (90%) 36s, ~4s left, loss=0.512, top1=81.2",
        "epoch 1/3: 10/10 (100%) 40s, loss=0.512, top1=81.2",
    ]
    assert "\r" not in out.getvalue()


def test_an_iterable_without_length_counts_only() -> None:
    out, clock = io.StringIO(), FakeClock()
    for _ in LineProgress(iter(range(3)), desc="attack", stream=out, clock=clock):
        clock.now += 1.0
    assert out.getvalue() == "attack: 3 3s\n"


def test_disabled_progress_writes_nothing_and_yields_everything() -> None:
    out = Tty()
    assert list(progress(range(5), desc="x", enabled=False, stream=out)) == [0, 1, 2, 3, 4]
    assert out.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_a_file_gets_lines() -> None:
    assert isinstance(progress(range(2), desc="x", stream=Tty()), tqdm)
    assert isinstance(progress(range(2), desc="x", stream=io.StringIO()), LineProgress)


def test_an_empty_loop_writes_no_line() -> None:
    out = io.StringIO()
    bar = LineProgress([], desc="x", stream=out)
    list(bar)
    bar.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize(("flags", "epoch_lines", "progress_lines"), [([], 1, 1), (["--no-progress"], 1, 0),
                                                                      (["-q"], 0, 0)])  # fmt: skip
def test_train_output_in_a_log(flags, epoch_lines, progress_lines, tiny_fmnist, tmp_path, capsys) -> None:
    from visionlab.cli import main

    argv = ["train", "--data", tiny_fmnist, "--epochs", "1", "-b", "32", "--out",
            str(tmp_path / "run"), "--no-tensorboard", *flags]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert sum(line.startswith("[visionlab] epoch 1/1:") for line in err) == epoch_lines
    assert sum(line.startswith("epoch 1/1: ") for line in err) == progress_lines  # the end-of-epoch line
    assert "\r" not in captured.err
    assert "* Acc@1" in captured.out  # the result, always


def test_boundaries_of_the_line_writer() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(range(3), desc="d", stream=out, interval=10.0, clock=clock)
    assert bar.line() == "d: 0/3 (0%) 0s"  # nothing done yet: no estimate (and no division by zero)
    for _ in bar:
        clock.now += 5.0  # a line exactly when 10 s have passed, not later
    assert out.getvalue().splitlines() == ["d: 2/3 (67%) 10s, ~5s left", "d: 3/3 (100%) 15s"]
    one, clock = io.StringIO(), FakeClock()
    single = LineProgress(range(4), desc="e", stream=one, interval=1.0, clock=clock)
    for _ in single:
        clock.now += 2.0
        break
    single.close()
    assert one.getvalue() == "e: 1/4 (25%) 2s, ~6s left\n"  # after one item: a line, with an estimate


def test_the_interval_reaches_the_line_writer_and_the_bar_writes_to_its_stream() -> None:
    bar = progress(range(2), desc="x", stream=io.StringIO(), interval=2.5)
    assert isinstance(bar, LineProgress) and bar.interval == 2.5
    tty = Tty()
    shown = progress(range(3), desc="shown", stream=tty)
    assert list(shown) == [0, 1, 2] and "shown" in tty.getvalue()
    assert shown.leave is False  # a finished bar is cleared, the epoch line follows
    assert shown.dynamic_ncols  # the bar follows the terminal's width when it is resized


def test_a_closed_stream_is_not_a_terminal() -> None:
    closed = io.StringIO()
    closed.close()
    assert isinstance(progress(range(1), desc="x", stream=closed, enabled=False), LineProgress)
    from visionlab.progress import _is_terminal

    assert _is_terminal(closed) is False
