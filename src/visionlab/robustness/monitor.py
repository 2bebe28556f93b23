"""Robustness measured while a model trains: what ``--select-by robust`` selects on, and the alarm for
catastrophic overfitting.

Every epoch the trainer asks :class:`RobustMonitor` for the PGD-10 top-1 accuracy on a fixed subset of the
validation images (L∞, the training ε, step 2.5 ε / 10 = ε / 4, no random start: deterministic, so it draws no
random number and exact resume holds). FGSM training can overfit catastrophically (Wong et al. 2020): within an
epoch the model learns to defeat FGSM alone and its PGD accuracy collapses towards 0 while training accuracy
rises; a sudden collapse of this number is that signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from visionlab.robustness.attacks import PGD
from visionlab.robustness.evaluate import robust_evaluate
from visionlab.robustness.steps import default_step
from visionlab.runtime.distributed import DistContext, shard_dataset

__all__ = ["RobustMonitor"]


@dataclass
class RobustMonitor:
    """PGD top-1 (%) of a model on the first ``n`` images of ``val``.

    Args:
        val: the validation dataset (pixels in [0, 1]).
        eps: L∞ radius in pixel units (the training ε).
        n: how many validation images (the first ``n``; default 1000).
        steps: PGD iterations (default 10); step :func:`~visionlab.robustness.steps.default_step`, ``2.5 * eps /
            steps`` (Madry et al.): ``eps / 4`` at the default 10 steps, as before; for another count the step was
            ``eps / 4`` whatever the count until this default was shared.
        batch_size: images per attack batch.
        device: where the model is.
        dist: distributed training: each rank attacks its share of the ``n`` images, counts are summed.
        collapse_points: a drop of more than this many points from the previous epoch's accuracy is reported as
            catastrophic overfitting (default 20: Wong et al.'s early-stopping rule; a healthy run moves by a few
            points per epoch; our FGSM-RS Fashion-MNIST run fell once from 71.1% to 35.6% and recovered).
    """

    val: Dataset
    eps: float
    n: int = 1000
    steps: int = 10
    batch_size: int = 256
    device: torch.device | str = "cpu"
    collapse_points: float = 20.0
    dist: DistContext = field(default_factory=DistContext)

    def __post_init__(self) -> None:
        subset = shard_dataset(Subset(self.val, range(min(self.n, len(self.val)))), self.dist)
        self.loader = DataLoader(subset, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def measure(self, model: nn.Module) -> float:
        """PGD top-1 (%) on the subset; the model's mode, flags and statistics are left as they were."""
        attack = PGD(model, self.eps, default_step(self.eps, self.steps), steps=self.steps, random_start=False)
        return robust_evaluate(model, self.loader, attack, self.device, dist=self.dist)["robust_top1"]

    def collapsed(self, previous: float | None, now: float) -> bool:
        """Whether ``now`` (this epoch's PGD top-1) is a collapse from ``previous`` (the last epoch's)."""
        return previous is not None and previous - now > self.collapse_points
