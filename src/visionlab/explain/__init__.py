"""Explaining predictions: saliency maps (vanilla gradient, SmoothGrad) and their renderings.

``saliency(model, images)`` gives per-pixel maps ``(N, H, W)``; ``red_overlay`` / ``heatmap_overlay`` draw them
on the images, ``image_grid`` / ``save_grid`` / ``add_to_tensorboard`` lay them out and store them (the course
logged the red overlays 10 per row under :data:`TAG_SALIENCY`).

Whether a map means anything: ``cascading_randomization`` / ``data_randomization`` (Adebayo et al.'s sanity
checks, with ``spearman`` and ``ssim`` from :mod:`~visionlab.explain.similarity`), ``deletion_curve`` /
``insertion_curve`` / ``compare_orderings`` (Petsiuk et al.'s faithfulness curves), and their figures
(``cascade_figure``, ``similarity_figure``, ``faithfulness_figure``).
"""

from visionlab.explain.base import Explainer, edge_map, random_map
from visionlab.explain.faithfulness import (
    FaithfulnessResult,
    PerturbationCurve,
    compare_orderings,
    deletion_curve,
    gaussian_blur,
    insertion_curve,
    pixel_order,
)
from visionlab.explain.figures import cascade_figure, faithfulness_figure, similarity_figure
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
from visionlab.explain.sanity import (
    MethodSanity,
    SanityResult,
    cascade,
    cascading_randomization,
    data_randomization,
    parameterized_layers,
)
from visionlab.explain.similarity import minmax_normalize, spearman, ssim

__all__ = [
    "REDUCTIONS",
    "TAG_ADVERSARIAL",
    "TAG_ORIGINAL",
    "TAG_SALIENCY",
    "Explainer",
    "FaithfulnessResult",
    "MethodSanity",
    "PerturbationCurve",
    "SanityResult",
    "add_to_tensorboard",
    "amplified_difference",
    "cascade",
    "cascade_figure",
    "cascading_randomization",
    "compare_orderings",
    "data_randomization",
    "deletion_curve",
    "edge_map",
    "faithfulness_figure",
    "gaussian_blur",
    "heatmap_overlay",
    "image_grid",
    "insertion_curve",
    "minmax_normalize",
    "parameterized_layers",
    "pixel_order",
    "random_map",
    "red_overlay",
    "saliency",
    "save_grid",
    "similarity_figure",
    "spearman",
    "ssim",
]
