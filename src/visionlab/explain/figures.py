"""Figures of the sanity checks and the faithfulness curves, as matplotlib :class:`~matplotlib.figure.Figure`
objects built without pyplot (no display, no global figure list: nothing to close, safe in any thread); save one
with ``fig.savefig(path)`` or embed it with :func:`visionlab.report.figure_png`.

* :func:`cascade_figure`: Adebayo et al. 2018's Fig. 2: one row per method, the example image's map from the
  trained model and after each step of the cascade, left to right;
* :func:`similarity_figure`: the mean Spearman and SSIM against the trained maps after each step, one line per
  method with its spread over images shaded, and the pass line;
* :func:`faithfulness_figure`: the mean deletion and insertion curves of each ordering, its mean AUC in the
  legend.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from visionlab.errors import ConfigError
from visionlab.explain.faithfulness import CURVE_KINDS, FaithfulnessResult
from visionlab.explain.sanity import SanityResult

__all__ = ["cascade_figure", "faithfulness_figure", "similarity_figure"]


def cascade_figure(result: SanityResult, *, cmap: str = "gray", size: float = 1.3) -> Figure:
    """Rows = methods, columns = the input image, the trained model's map, then the map after each step (titled
    by the layer randomized last). Each map is drawn as its absolute value scaled to its own maximum, as the
    paper shows them; ``size`` is the side of one panel in inches."""
    rows, cols = len(result.methods), len(result.steps) + 2
    fig = Figure(figsize=(size * cols, size * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = result.example_image.detach().cpu().float()
    for row, (name, method) in enumerate(result.methods.items()):
        picture = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
        axes[row][0].imshow(picture.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[row][0].set_ylabel(name, fontsize=8)
        for col, maps in enumerate(method.example_maps.detach().cpu().float().abs(), start=1):
            axes[row][col].imshow(maps.numpy(), cmap=cmap, vmin=0, vmax=max(float(maps.max()), 1e-12))
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    for col, title in enumerate(("input", "trained", *result.steps)):
        axes[0][col].set_title(title or "(model)", fontsize=7, rotation=45 if col > 1 else 0)
    return fig


def similarity_figure(result: SanityResult) -> Figure:
    """Two panels, mean Spearman and mean SSIM against the trained maps after each step (the repeat on the trained
    model at step 0), one line per method, ±1 sd over images shaded, the pass line dashed on the Spearman panel."""
    fig = Figure(figsize=(max(6.0, 0.45 * len(result.steps) + 4), 3.6), layout="constrained")
    ax_rank, ax_ssim = fig.subplots(1, 2)
    labels = ["trained", *(step or "(model)" for step in result.steps)]
    positions = list(range(len(labels)))
    for name, method in result.methods.items():
        data = method.to_dict()
        for ax, key, first in ((ax_rank, "spearman", data["repeat_spearman"]), (ax_ssim, "ssim", 1.0)):
            mean = [first, *data[f"{key}_mean"]]
            sd = [0.0, *data[f"{key}_sd"]]
            ax.plot(positions, mean, marker="o", markersize=3, label=f"{name} ({'pass' if method.passed else 'fail'})")
            low = [m - s for m, s in zip(mean, sd, strict=True)]
            high = [m + s for m, s in zip(mean, sd, strict=True)]
            ax.fill_between(positions, low, high, alpha=0.2)
    threshold = next(iter(result.methods.values())).threshold
    ax_rank.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
    for ax, title in ((ax_rank, "Spearman rank correlation (|maps|)"), (ax_ssim, "SSIM (|maps| in [0, 1])")):
        ax.set_title(title, fontsize=9)
        ax.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(-0.25, 1.05)
        ax.set_xlabel("randomized down to" if result.kind == "cascading" else "model")
    ax_rank.legend(fontsize=7)
    return fig


def faithfulness_figure(result: FaithfulnessResult) -> Figure:
    """Two panels, deletion and insertion: each ordering's mean probability of the target class against the
    fraction of pixels changed, its mean AUC in the legend (deletion: lower is better; insertion: higher)."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = dict(zip(CURVE_KINDS, fig.subplots(1, 2), strict=True))
    if not result.curves:
        raise ConfigError("has no curves to draw", field="result")
    for name, kinds in result.curves.items():
        for kind, ax in axes.items():
            curve = kinds[kind]
            mean = curve.probabilities.mean(dim=0).cpu()
            ax.plot(curve.fractions.cpu().numpy(), mean.numpy(), label=f"{name} (AUC {curve.mean_auc:.3f})")
    for kind, ax in axes.items():
        better = "lower" if kind == "deletion" else "higher"
        ax.set_title(f"{kind} ({better} AUC is better)", fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"))
        ax.set_ylabel("probability of the target class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    return fig
