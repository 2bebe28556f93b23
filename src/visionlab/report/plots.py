"""Training curves from ``metrics.jsonl``: one run (``curves.png``) or several side by side (``compare``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from visionlab.engine.metrics import read_metrics

__all__ = ["plot_runs"]


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Plot loss (train, val), top-1 / top-5 (train, val) and learning rate against epoch for each run into
    one figure with three panels; runs are told apart by colour, train/val by line style. The learning rate is
    drawn per logged step (warmup and cosine as the optimizer saw them) when the run has step records, else per
    epoch. Returns ``out``."""
    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs")
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(16, 4.5))
    for i, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
        records = read_metrics(run_dir)
        epochs = [r for r in records if r.get("type") == "epoch"]
        if not epochs:
            raise ValueError(f"{run_dir}: no epoch records in metrics.jsonl")
        x = [r["epoch"] + 1 for r in epochs]
        color = f"C{i}"
        ax_loss.plot(x, [r["train_loss"] for r in epochs], color=color, ls="--", label=f"{label} train")
        ax_loss.plot(x, [r["val_loss"] for r in epochs], color=color, label=f"{label} val")
        ax_acc.plot(x, [r["train_top1"] for r in epochs], color=color, ls="--", label=f"{label} train top-1")
        ax_acc.plot(x, [r["val_top1"] for r in epochs], color=color, label=f"{label} val top-1")
        ax_acc.plot(x, [r["val_top5"] for r in epochs], color=color, ls=":", label=f"{label} val top-5")
        ax_lr.plot(*_lr_curve(records, epochs), color=color, label=label)
    for ax, title, ylabel in (
        (ax_loss, "loss", "cross-entropy"),
        (ax_acc, "accuracy", "%"),
        (ax_lr, "learning rate", "lr"),
    ):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _lr_curve(records: list[dict], epochs: list[dict]) -> tuple[list[float], list[float]]:
    """Learning rate against fractional epoch from the step records: a step record ``s`` of epoch ``e`` sits at
    ``1 + e + (s - first) / (last - first)``, where ``first``/``last`` are the global steps at the end of the
    previous epoch and of epoch ``e``; epoch ``e``'s own record sits at ``e + 1``, like the other panels. Falls
    back to the epoch records alone when there are no step records (or the steps cannot be placed)."""
    bounds: dict[int, tuple[int, int]] = {}
    previous = 0
    for r in epochs:
        if "step" not in r:
            return [r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs]
        bounds[r["epoch"]] = (previous, r["step"])
        previous = r["step"]
    points = [(r["epoch"] + 1.0, r["lr"]) for r in epochs]
    for r in records:
        if r.get("type") == "step" and r.get("epoch") in bounds:
            first, last = bounds[r["epoch"]]
            if last > first:
                points.append((r["epoch"] + (r["step"] - first) / (last - first), r["lr"]))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]
