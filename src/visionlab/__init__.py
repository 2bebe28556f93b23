"""visionlab: train, evaluate, explain and attack image classifiers on PyTorch.

Data flow is one direction: dataset -> transforms (pixels in [0, 1]) -> model (whose first layer is
:class:`~visionlab.models.Normalize`) -> engine / attack / saliency.
"""

__version__ = "0.1.0"
