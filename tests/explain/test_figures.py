"""The figures of the sanity checks and faithfulness curves: one panel per method and step, the legends carry the
verdicts and the AUCs, and they save as PNG without a display."""

from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure

from visionlab.explain import edge_map, saliency
from visionlab.explain.faithfulness import compare_orderings
from visionlab.explain.figures import cascade_figure, faithfulness_figure, similarity_figure
from visionlab.explain.sanity import cascading_randomization

from .builders import mixed_state_net

EXPLAINERS = {"gradient": lambda m, x, t: saliency(m, x, t), "edge": edge_map}


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


def test_cascade_and_similarity_figures_show_every_method_and_step() -> None:
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = cascading_randomization(mixed_state_net(size=8), images, EXPLAINERS)
    cascade = cascade_figure(result)
    assert len(cascade.axes) == 2 * (3 + 2)  # rows = methods; input, trained, then 3 steps
    assert [ax.get_title() for ax in cascade.axes[:5]] == ["input", "trained", "4", "1", "0"]
    assert [cascade.axes[i].get_ylabel() for i in (0, 5)] == ["gradient", "edge"]
    curves = similarity_figure(result)
    labels = [t.get_text() for t in curves.axes[0].get_legend().get_texts()]
    verdict = "pass" if result.methods["gradient"].passed else "fail"
    assert labels == [f"gradient ({verdict})", "edge (fail)"]
    assert png(cascade).startswith(b"\x89PNG") and png(curves).startswith(b"\x89PNG")


def test_faithfulness_figure_puts_each_orderings_mean_auc_in_the_legend() -> None:
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    result = compare_orderings(mixed_state_net(size=8), images, {"gradient": EXPLAINERS["gradient"]}, steps=4)
    fig = faithfulness_figure(result)
    for ax, kind in zip(fig.axes, ("deletion", "insertion"), strict=True):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"{name} (AUC {result.curves[name][kind].mean_auc:.3f})" for name in result.curves]
        assert ax.get_title().startswith(kind)
    assert png(fig).startswith(b"\x89PNG")
