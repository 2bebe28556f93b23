"""``report/callbacks.py``: ``PlotCurves`` redraws ``curves.png`` after the run's last epoch and otherwise at most
every ``interval`` seconds, under a scripted clock."""

from __future__ import annotations

import time
from types import SimpleNamespace


def test_curves_are_drawn_after_the_last_epoch_and_at_most_every_interval_before(monkeypatch, tmp_path) -> None:
    """PlotCurves under a scripted clock: an epoch is drawn once `interval` seconds have passed since the last
    drawing, or since the first epoch began (its record's `seconds` before the first reading); the run's last epoch
    always is."""
    from visionlab.report import PlotCurves
    from visionlab.report import callbacks as callbacks_module

    drawn = []
    monkeypatch.setattr(callbacks_module, "plot_runs", lambda runs, out, labels: drawn.append((runs, out, labels)))
    now = [100.0]
    plot = PlotCurves(interval=10.0, clock=lambda: now[0])
    trainer = SimpleNamespace(cfg=SimpleNamespace(epochs=8), run_dir=tmp_path / "run")
    epochs: list[int] = []
    # (clock advance, the epoch's own seconds): epoch 2 spends 2 s writing checkpoints after its timed part
    for epoch, (advance, seconds) in enumerate([(6, 6), (4, 4), (11, 9), (4, 4), (6, 6), (0.05, 0.05), (0.5, 0.5),
                                                (0.5, 0.5)]):  # fmt: skip
        now[0] += advance
        plot.on_epoch_end(trainer, {"epoch": epoch, "seconds": seconds})
        epochs += [epoch] * (len(drawn) - len(epochs))
    # 10 s from the first epoch's start (110); 11 s after that drawing, checkpoints included (121); 10 s (131);
    # not epoch 6, one before the last; the last
    assert epochs == [1, 2, 4, 7]
    assert drawn[0] == ([tmp_path / "run"], tmp_path / "run" / "curves.png", ["run"])
    for seconds, draws in ((9.99, 0), (10.0, 1), (None, 1)):  # the default interval, 10 s; no time: at once
        PlotCurves(clock=lambda: 50.0).on_epoch_end(trainer, {"epoch": 0} | ({"seconds": seconds} if seconds else {}))
        assert len(drawn) == 4 + draws
        del drawn[4:]
    assert PlotCurves().clock is time.monotonic
