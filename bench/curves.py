"""What one drawing of ``curves.png`` costs: :func:`visionlab.report.plot_runs` on a synthetic run directory.

The training callback :class:`~visionlab.report.PlotCurves` redraws the figure after the last epoch and otherwise
at most every 10 s; this measures why (the first drawing in a process, which loads fonts, and the median of the
next ones).

    .venv/bin/python bench/curves.py [--epochs 10] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def write_run(run: Path, epochs: int, steps_per_epoch: int = 47) -> None:
    """A ``metrics.jsonl`` shaped like the trainer's: a step record every 10 steps, one epoch record per epoch."""
    records = []
    for e in range(epochs):
        for s in range(10, steps_per_epoch + 1, 10):
            step = e * steps_per_epoch + s
            records.append({"type": "step", "epoch": e, "step": step, "lr": 0.1, "loss": 1.0 / (1 + step)})
        records.append({"type": "epoch", "epoch": e, "step": (e + 1) * steps_per_epoch, "lr": 0.1,
                        "train_loss": 1.0 / (e + 1), "train_top1": 50 + e, "train_top5": 90.0,
                        "val_loss": 1.1 / (e + 1), "val_top1": 55 + e, "val_top5": 91.0, "seconds": 30.0})  # fmt: skip
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    from visionlab.report import plot_runs

    imported = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        write_run(run, args.epochs)
        times = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            plot_runs([run], run / "curves.png", labels=["run"])
            times.append(time.perf_counter() - start)
    first, rest = times[0], times[1:]
    print(f"{'drawing of curves.png':<32}{'seconds':>9}")
    print(f"{'import visionlab.report':<32}{imported:>9.3f}")
    print(f"{'first in the process':<32}{first:>9.3f}")
    print(f"{'median of the next ' + str(len(rest)):<32}{statistics.median(rest):>9.3f}")
    print(f"{args.epochs} epochs of records; share of a 30 s epoch: {statistics.median(rest) / 30:.2%}")
    print(json.dumps({"first_s": round(first, 3), "median_s": round(statistics.median(rest), 3),
                      "share_of_30s_epoch": round(statistics.median(rest) / 30, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
