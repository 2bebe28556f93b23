"""Explaining predictions: saliency maps (vanilla gradient, SmoothGrad), Integrated Gradients, Grad-CAM, and
their renderings.

``saliency(model, images)`` gives per-pixel maps ``(N, H, W)``; ``integrated_gradients`` signed attributions
with their completeness gap; ``gradcam`` a class-activation map at a convolutional layer; ``explain(model,
images, method)`` any of them by name (``METHODS``) as a non-negative map ``(N, H, W)``. ``red_overlay`` /
``heatmap_overlay`` draw maps on the images, ``image_grid`` / ``save_grid`` / ``add_to_tensorboard`` lay them out
and store them (the course logged the red overlays 10 per row under :data:`TAG_SALIENCY`).

Whether a map means anything: ``cascading_randomization`` / ``data_randomization`` (Adebayo et al.'s sanity
checks, with ``spearman`` and ``ssim`` from :mod:`~visionlab.explain.similarity`; ``layer_groups``: what each
step of the cascade randomizes, a layer or a block), ``deletion_curve`` /
``insertion_curve`` / ``compare_orderings`` (Petsiuk et al.'s faithfulness curves), and their figures
(``cascade_figure``, ``similarity_figure``, ``faithfulness_figure``).
"""

from visionlab.explain.base import Explainer, edge_map, gaussian_blur, random_map
from visionlab.explain.faithfulness import (
    FaithfulnessResult,
    PerturbationCurve,
    compare_orderings,
    deletion_curve,
    insertion_curve,
    pixel_order,
)
from visionlab.explain.figures import cascade_figure, faithfulness_figure, similarity_figure
from visionlab.explain.gradcam import gradcam, gradcam_layers
from visionlab.explain.integrated import IG_BASELINES, RULES, Attribution, blurred, integrated_gradients, quadrature
from visionlab.explain.methods import BASELINES, DEFAULTS, METHODS, Method, attribution_map, explain, explainer
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
    GRANULARITIES,
    MethodSanity,
    SanityResult,
    cascade,
    cascading_randomization,
    data_randomization,
    layer_groups,
    parameterized_layers,
)
from visionlab.explain.similarity import minmax_normalize, spearman, ssim

__all__ = [
    "BASELINES",
    "DEFAULTS",
    "GRANULARITIES",
    "IG_BASELINES",
    "METHODS",
    "REDUCTIONS",
    "RULES",
    "TAG_ADVERSARIAL",
    "TAG_ORIGINAL",
    "TAG_SALIENCY",
    "Attribution",
    "Explainer",
    "FaithfulnessResult",
    "Method",
    "MethodSanity",
    "PerturbationCurve",
    "SanityResult",
    "add_to_tensorboard",
    "amplified_difference",
    "attribution_map",
    "blurred",
    "cascade",
    "cascade_figure",
    "cascading_randomization",
    "compare_orderings",
    "data_randomization",
    "deletion_curve",
    "edge_map",
    "explain",
    "explainer",
    "faithfulness_figure",
    "gaussian_blur",
    "gradcam",
    "gradcam_layers",
    "heatmap_overlay",
    "image_grid",
    "insertion_curve",
    "integrated_gradients",
    "layer_groups",
    "minmax_normalize",
    "parameterized_layers",
    "pixel_order",
    "quadrature",
    "random_map",
    "red_overlay",
    "saliency",
    "save_grid",
    "similarity_figure",
    "spearman",
    "ssim",
]
