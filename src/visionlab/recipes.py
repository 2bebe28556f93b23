"""Default hyperparameters per (model, dataset kind), chosen by experiment (see BENCHMARKS.md).

A flag given on the command line always wins over a recipe; a recipe wins over :class:`TrainConfig`'s defaults
(which are the original course ``main.py`` defaults).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECIPES", "recipe_for"]

RECIPES: dict[tuple[str, str | None], dict[str, Any]] = {
    # Fashion-MNIST demo: >= 90% test top-1 in <= 10 minutes on 2 CPU cores.
    ("simplenet", "fashion-mnist"): dict(epochs=12, batch_size=128, lr=0.05, weight_decay=5e-4, warmup=1.0, workers=2),
}


def recipe_for(model: str, data_kind: str) -> dict[str, Any]:
    """The recipe for ``model`` on ``data_kind``, else the model's dataset-independent recipe, else ``{}``."""
    return dict(RECIPES.get((model, data_kind), RECIPES.get((model, None), {})))
