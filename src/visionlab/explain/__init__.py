"""Explaining predictions: saliency maps (vanilla gradient, SmoothGrad).

``saliency(model, images)`` gives per-pixel maps ``(N, H, W)``.
"""

from visionlab.explain.saliency import REDUCTIONS, saliency

__all__ = ["REDUCTIONS", "saliency"]
