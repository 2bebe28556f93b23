"""Curve figures: where the per-step learning rate lands on the epoch axis, and the figure is written."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from visionlab.report.plots import _lr_curve, curves_figure, plot_runs


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
