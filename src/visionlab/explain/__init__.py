"""Explaining predictions: saliency maps (vanilla gradient, SmoothGrad) and their renderings.

``saliency(model, images)`` gives per-pixel maps ``(N, H, W)``; ``red_overlay`` / ``heatmap_overlay`` draw them
on the images, ``image_grid`` / ``save_grid`` / ``add_to_tensorboard`` lay them out and store them (the course
logged the red overlays 10 per row under :data:`TAG_SALIENCY`).
"""

from visionlab.explain.base import Explainer, edge_map, random_map
from visionlab.explain.render import (
    TAG_ADVERSARIAL,
    TAG_ORIGINAL,
    TAG_SALIENCY,
    add_to_tensorboard,
    amplified_difference,
    heatmap_overlay,
    image_grid,
    red_overlay,
    save_grid,
)
from visionlab.explain.saliency import REDUCTIONS, saliency

__all__ = [
    "REDUCTIONS",
    "TAG_ADVERSARIAL",
    "TAG_ORIGINAL",
    "TAG_SALIENCY",
    "Explainer",
    "add_to_tensorboard",
    "amplified_difference",
    "edge_map",
    "heatmap_overlay",
    "image_grid",
    "random_map",
    "red_overlay",
    "saliency",
    "save_grid",
]
