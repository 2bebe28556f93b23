"""Training curves from ``metrics.jsonl``: one run (``curves.png``), several side by side (``compare``), or as PNG
bytes for the HTML report."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from visionlab.errors import ConfigError, UserError
from visionlab.runtime.metrics import read_metrics

__all__ = ["curves_figure", "figure_png", "plot_runs"]


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Plot loss (train, val), top-1 / top-5 (train, val; validation PGD top-1 and the weight EMA's top-1 and PGD
    top-1 when the run measured them) and learning rate against epoch for each run into one figure with three
    panels; runs are told apart by colour, train/val by line style. The learning rate is drawn per logged step
    (warmup and cosine as the optimizer saw them) when the run has step records, else per epoch. Returns
    ``out``."""
    fig = curves_figure(run_dirs, labels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes (for pages that embed their images); the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def curves_figure(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> Figure:
    """The figure :func:`plot_runs` writes (loss, accuracy and learning-rate panels, one colour per run)."""
    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ConfigError(f"{len(labels)} labels for {len(run_dirs)} runs", field="labels")
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(16, 4.5))
    try:
        for i, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
            records = read_metrics(run_dir)
            epochs = [r for r in records if r.get("type") == "epoch"]
            if not epochs:
                raise UserError(f"{run_dir}: no epoch records in metrics.jsonl (no epoch finished yet)")
            x = [r["epoch"] + 1 for r in epochs]
            color = f"C{i}"
            ax_loss.plot(x, [r["train_loss"] for r in epochs], color=color, ls="--", label=f"{label} train")
            ax_loss.plot(x, [r["val_loss"] for r in epochs], color=color, label=f"{label} val")
            _accuracy_curves(ax_acc, x, epochs, color, label)
            ax_lr.plot(*_lr_curve(records, epochs), color=color, label=label)
    except BaseException:
        plt.close(fig)
        raise
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
    return fig


# The accuracy panel's curves: metric key, legend suffix, line style, marker. A curve is drawn when every epoch
# record has its key: PGD top-1 with a robustness monitor (adversarial training, --select-by robust), the EMA's
# with --ema.
_ACCURACY_CURVES = (
    ("train_top1", "train top-1", "--", None),
    ("val_top1", "val top-1", "-", None),
    ("val_top5", "val top-5", ":", None),
    ("val_robust_top1", "val PGD top-1", "-.", "."),
    ("val_ema_top1", "EMA val top-1", "-", "^"),
    ("val_ema_robust_top1", "EMA val PGD top-1", "-.", "^"),
)


def _accuracy_curves(ax, x: list[int], epochs: list[dict], color: str, label: str) -> None:
    for key, name, style, marker in _ACCURACY_CURVES:
        if all(key in r for r in epochs):
            values = [r[key] for r in epochs]
            ax.plot(x, values, color=color, ls=style, marker=marker, markersize=4, label=f"{label} {name}")


def _lr_curve(records: list[dict], epochs: list[dict]) -> tuple[list[float], list[float]]:
    """Learning rate against fractional epoch. The trainer counts global steps from ``epoch * steps_per_epoch``
    (also after ``--start-epoch`` or a resume), so a record at global step ``s`` sits at ``s / steps_per_epoch``
    and epoch ``e``'s own record at ``e + 1``, like the other panels. Without step counts (older runs) the epoch
    records alone are drawn."""
    if any("step" not in r for r in epochs):
        return [r["epoch"] + 1 for r in epochs], [r["lr"] for r in epochs]
    steps_per_epoch = epochs[-1]["step"] / (epochs[-1]["epoch"] + 1)
    points = sorted((r["step"] / steps_per_epoch, r["lr"]) for r in records if r.get("type") in ("step", "epoch"))
    return [x for x, _ in points], [lr for _, lr in points]
