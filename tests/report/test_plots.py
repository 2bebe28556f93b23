"""Curve figures: where the per-step learning rate lands on the epoch axis, and the figure is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionlab.report.plots import _lr_curve, plot_runs


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
