"""Trainer callbacks that draw: :class:`PlotCurves` keeps a run's ``curves.png`` up to date while it trains.

The trainer (:mod:`visionlab.engine`) knows nothing of plots; whoever builds it passes these in (the CLI's
``train`` command does)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from visionlab.engine import Callback, Trainer
from visionlab.report.plots import plot_runs

__all__ = ["PlotCurves"]


class PlotCurves(Callback):
    """Redraws ``RUN_DIR/curves.png`` (loss, top-1/top-5, lr) from ``metrics.jsonl``: after the run's last epoch,
    and after any other epoch once ``interval`` seconds have passed since the last drawing (or since the first
    epoch began).

    One drawing costs ~0.16 s on 2 CPU cores (matplotlib's figure, layout and PNG; `bench/curves.py`, BENCHMARKS.md):
    nothing beside a 30 s CPU epoch, which is still drawn every time, but a quarter of the trainer tests' time
    (29.6 s -> 21.6 s of the suite, 2026-11-27) when every sub-second epoch of theirs was drawn. ``clock``
    (seconds) is for tests."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._since: float | None = None  # the last drawing, or the first epoch's start

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        now = self.clock()
        if self._since is None:
            self._since = now - record.get("seconds", math.inf)
        if now - self._since < self.interval and record["epoch"] + 1 < trainer.cfg.epochs:
            return
        plot_runs([trainer.run_dir], trainer.run_dir / "curves.png", labels=[trainer.run_dir.name])
        self._since = self.clock()
