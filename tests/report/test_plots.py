"""Curve figures (``report/plots.py``): where the per-step learning rate lands on the epoch axis, every panel's
titles, labels, styles, colours and sizes read back from matplotlib, the PNG's pixel size at the given
resolution, the figure written, and a failing run leaves no figure open."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.ticker import MaxNLocator
from PIL import Image

from visionlab.errors import ConfigError, UserError
from visionlab.report.plots import _lr_curve, curves_figure, figure_png, plot_runs


def _epoch(e: int, step: int, lr: float) -> dict:
    return dict(type="epoch", epoch=e, step=step, lr=lr, train_loss=1.0, train_top1=50.0, val_loss=1.0,
                val_top1=50.0, val_top5=90.0, seconds=1.0)  # fmt: skip


def test_step_records_land_at_fractional_epochs() -> None:
    # Two epochs of 4 steps each (global steps 1..8), logged every 2 steps.
    epochs = [_epoch(0, 4, 0.3), _epoch(1, 8, 0.1)]
    steps = [dict(type="step", epoch=e, step=s, lr=lr) for e, s, lr in [(0, 2, 0.5), (0, 4, 0.3), (1, 6, 0.2)]]
    x, lr = _lr_curve([steps[0], steps[1], epochs[0], steps[2], epochs[1]], epochs)
    # step 2 of epoch 0 -> 0 + 2/4; step 4 -> 1.0 (same place as epoch 0's record); step 6 of epoch 1 -> 1 + 2/4.
    assert x == [0.5, 1.0, 1.0, 1.5, 2.0]
    assert lr == [0.5, 0.3, 0.3, 0.2, 0.1]


def test_epoch_records_alone_without_steps() -> None:
    epochs = [_epoch(0, 4, 0.3), {**_epoch(1, 8, 0.1)}]
    del epochs[1]["step"]
    assert _lr_curve(epochs, epochs) == ([1, 2], [0.3, 0.1])


def test_plot_runs_writes_the_figure_and_checks_labels(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    records = [dict(type="step", epoch=0, step=2, lr=0.5), _epoch(0, 4, 0.3), _epoch(1, 8, 0.1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = plot_runs([run], tmp_path / "figs" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 labels for 1 runs"):
        plot_runs([run], tmp_path / "x.png", labels=["a", "b"])


def _accuracy_lines(records: list[dict], run: Path) -> dict[str, list[float]]:
    """The accuracy panel's curves, label -> y values."""
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = curves_figure([run], labels=["r"])
    try:
        return {line.get_label(): [float(y) for y in line.get_ydata()] for line in fig.axes[1].get_lines()}
    finally:
        plt.close(fig)


def test_the_accuracy_panel_draws_exactly_the_curves_the_run_measured(tmp_path: Path) -> None:
    plain = [_epoch(0, 4, 0.3), _epoch(1, 8, 0.1)]
    assert _accuracy_lines(plain, tmp_path / "plain") == {
        "r train top-1": [50.0, 50.0], "r val top-1": [50.0, 50.0], "r val top-5": [90.0, 90.0]}  # fmt: skip
    measured = [{**r, "val_robust_top1": 40.0 + e, "val_ema_top1": 60.0 + e, "val_ema_robust_top1": 45.0 + e}
                for e, r in enumerate(plain)]  # fmt: skip
    lines = _accuracy_lines(measured, tmp_path / "ema")
    assert lines["r val PGD top-1"] == [40.0, 41.0]
    assert lines["r EMA val top-1"] == [60.0, 61.0]
    assert lines["r EMA val PGD top-1"] == [45.0, 46.0]
    measured[1].pop("val_ema_robust_top1")  # a curve needs every epoch's value
    assert "r EMA val PGD top-1" not in _accuracy_lines(measured, tmp_path / "partial")


def _improving_epoch(e: int, step: int, lr: float, **extra: float) -> dict:
    return dict(type="epoch", epoch=e, step=step, lr=lr, train_loss=2.0 - e, train_top1=50.0 + e, val_loss=1.5 - e,
                val_top1=60.0 + e, val_top5=90.0 + e, seconds=1.0, **extra)  # fmt: skip


def _run(root: Path, name: str, records: list[dict]) -> Path:
    run = root / name
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def _two_epochs(**extra: float) -> list[dict]:
    return [
        dict(type="step", epoch=0, step=2, lr=0.5),
        _improving_epoch(0, 4, 0.3, **extra),
        _improving_epoch(1, 8, 0.1, **extra),
    ]


def _lines(ax) -> list[tuple]:
    """Each line as (label, colour, line style, marker, marker size, x, y)."""
    return [(line.get_label(), line.get_color(), line.get_linestyle(), line.get_marker(), line.get_markersize(),
             [float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()])
            for line in ax.get_lines()]  # fmt: skip


def test_every_panel_of_one_run(tmp_path: Path) -> None:
    run = _run(tmp_path, "r", _two_epochs(val_robust_top1=40.0, val_ema_top1=61.0, val_ema_robust_top1=45.0))
    fig = curves_figure([run])  # labelled by the directory name
    try:
        assert tuple(fig.get_size_inches()) == (16.0, 4.5)
        ax_loss, ax_acc, ax_lr = fig.axes
        assert len(fig.axes) == 3
        assert _lines(ax_loss) == [
            ("r train", "C0", "--", "None", 6.0, [1.0, 2.0], [2.0, 1.0]),
            ("r val", "C0", "-", "None", 6.0, [1.0, 2.0], [1.5, 0.5]),
        ]
        assert _lines(ax_acc) == [
            ("r train top-1", "C0", "--", "None", 4.0, [1.0, 2.0], [50.0, 51.0]),
            ("r val top-1", "C0", "-", "None", 4.0, [1.0, 2.0], [60.0, 61.0]),
            ("r val top-5", "C0", ":", "None", 4.0, [1.0, 2.0], [90.0, 91.0]),
            ("r val PGD top-1", "C0", "-.", ".", 4.0, [1.0, 2.0], [40.0, 40.0]),
            ("r EMA val top-1", "C0", "-", "^", 4.0, [1.0, 2.0], [61.0, 61.0]),
            ("r EMA val PGD top-1", "C0", "-.", "^", 4.0, [1.0, 2.0], [45.0, 45.0]),
        ]
        assert _lines(ax_lr) == [("r", "C0", "-", "None", 6.0, [0.5, 1.0, 2.0], [0.5, 0.3, 0.1])]
        expected = [("loss", "cross-entropy"), ("accuracy", "%"), ("learning rate", "lr")]
        assert [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes] == expected
        for ax in fig.axes:
            assert ax.get_xlabel() == "epoch"
            locator = ax.xaxis.get_major_locator()
            assert isinstance(locator, MaxNLocator) and locator._integer is True
            grid = ax.xaxis.get_gridlines()[0]
            assert grid.get_visible() and grid.get_alpha() == 0.3
            legend = ax.get_legend()
            assert [t.get_text() for t in legend.get_texts()] == [line.get_label() for line in ax.get_lines()]
            assert legend.get_texts()[0].get_fontsize() == 7.0
        # tight_layout moved the panels off the default subplot margins (left 0.125, right 0.9)
        assert fig.axes[0].get_position().x0 < 0.1 and fig.axes[2].get_position().x1 > 0.95
        boxes = [ax.get_position() for ax in fig.axes]  # one row of three panels, left to right
        assert boxes[0].x1 < boxes[1].x0 and boxes[1].x1 < boxes[2].x0
        assert boxes[0].y0 == boxes[1].y0 == boxes[2].y0
    finally:
        plt.close(fig)


def test_runs_take_the_colours_in_order_and_the_given_labels(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "a", _two_epochs()), _run(tmp_path, "b", _two_epochs())
    fig = curves_figure([a, b], ["first", "second"])
    try:
        assert [(line.get_label(), line.get_color()) for line in fig.axes[2].get_lines()] == [
            ("first", "C0"), ("second", "C1")]  # fmt: skip
    finally:
        plt.close(fig)


def test_bad_runs_raise_exact_errors_and_close_the_figure(tmp_path: Path) -> None:
    run = _run(tmp_path, "r", _two_epochs())
    empty = _run(tmp_path, "empty", [dict(type="step", epoch=0, step=2, lr=0.5)])
    plt.close("all")
    with pytest.raises(ConfigError, match=r"^labels: 2 labels for 1 runs$"):
        curves_figure([run], ["a", "b"])
    with pytest.raises(UserError, match=rf"^{re.escape(str(empty))}: no epoch records in metrics.jsonl "
                                        r"\(no epoch finished yet\)$"):  # fmt: skip
        curves_figure([run, empty])
    assert plt.get_fignums() == []  # the half-drawn figure was closed


def test_plot_runs_writes_at_110_dpi_into_an_existing_folder(tmp_path: Path) -> None:
    run = _run(tmp_path, "r", _two_epochs())
    plt.close("all")
    out = plot_runs([run], tmp_path / "figs" / "a" / "curves.png", labels=["x"])
    assert out == tmp_path / "figs" / "a" / "curves.png"
    assert plot_runs([run], tmp_path / "figs" / "a" / "again.png").is_file()  # the folder exists now
    with Image.open(out) as picture:
        assert picture.size == (1760, 495)  # 16 x 4.5 inches at 110 dpi
    assert plt.get_fignums() == []


def test_figure_png_is_a_png_at_the_given_resolution_and_closes_the_figure() -> None:
    fig = plt.figure(figsize=(2, 1))
    png = figure_png(fig)
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG" and picture.size == (220, 110)
    assert not plt.fignum_exists(fig.number)
    with Image.open(io.BytesIO(figure_png(plt.figure(figsize=(2, 1)), dpi=50))) as picture:
        assert picture.size == (100, 50)
    first, current = plt.figure(), plt.figure()
    figure_png(first)  # the figure given is closed, not pyplot's current one
    assert not plt.fignum_exists(first.number) and plt.fignum_exists(current.number)
    plt.close(current)


def test_only_step_and_epoch_records_are_learning_rate_points() -> None:
    epochs = [_improving_epoch(0, 4, 0.3), _improving_epoch(1, 8, 0.1)]
    other = dict(type="eval", epoch=0, step=3, lr=9.0)
    x, lr = _lr_curve([dict(type="step", epoch=0, step=2, lr=0.5), other, *epochs], epochs)
    assert (x, lr) == ([0.5, 1.0, 2.0], [0.5, 0.3, 0.1])


def test_learning_rate_steps_are_placed_by_the_last_epochs_steps_per_epoch() -> None:
    from visionlab.report.plots import _lr_curve

    # Three epochs of 4 steps; a step record mid-epoch 2 (global step 6) sits at 6 / 4 = 1.5 epochs.
    epochs = [{"type": "epoch", "epoch": e, "step": 4 * (e + 1), "lr": 0.1 / (e + 1)} for e in range(3)]
    records = [{"type": "step", "step": 6, "lr": 0.07}, *epochs, {"type": "other", "step": 2, "lr": 9.0}]
    assert _lr_curve(records, epochs) == ([1.0, 1.5, 2.0, 3.0], [0.1, 0.07, 0.05, 0.1 / 3])
