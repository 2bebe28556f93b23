"""Robustness measured while a model trains: what ``--select-by robust`` selects on, and the alarm for
catastrophic overfitting.

Every epoch the trainer asks :class:`RobustMonitor` for the PGD-10 top-1 accuracy on a fixed subset of the
validation images (L∞, the training ε, step ε/4, no random start: deterministic, so it draws no random number
and exact resume holds). FGSM training can overfit catastrophically (Wong et al. 2020): within an epoch the
model learns to defeat FGSM alone and its PGD accuracy collapses towards 0 while training accuracy rises; a
sudden collapse of this number is that signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from visionlab.robustness.attacks import PGD
from visionlab.robustness.evaluate import robust_evaluate

__all__ = ["RobustMonitor"]


@dataclass
class RobustMonitor:
    """PGD top-1 (%) of a model on the first ``n`` images of ``val``.

    Args:
        val: the validation dataset (pixels in [0, 1]).
        eps: L∞ radius in pixel units (the training ε).
        n: how many validation images (the first ``n``; default 1000).
        steps: PGD iterations (default 10, step ``eps / 4``: 2.5 ε over the run, as Madry et al.).
        batch_size: images per attack batch.
        device: where the model is.
        collapse_ratio, collapse_points: a drop to below ``collapse_ratio`` times the previous epoch's accuracy
            *and* by more than ``collapse_points`` points is reported as catastrophic overfitting (default: it
            halves and loses more than 10 points; a healthy run moves by a few points per epoch).
    """

    val: Dataset
    eps: float
    n: int = 1000
    steps: int = 10
    batch_size: int = 256
    device: torch.device | str = "cpu"
    collapse_ratio: float = 0.5
    collapse_points: float = 10.0

    def __post_init__(self) -> None:
        subset = Subset(self.val, range(min(self.n, len(self.val))))
        self.loader = DataLoader(subset, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def measure(self, model: nn.Module) -> float:
        """PGD top-1 (%) on the subset; the model's mode, flags and statistics are left as they were."""
        attack = PGD(model, self.eps, self.eps / 4, steps=self.steps, random_start=False)
        return robust_evaluate(model, self.loader, attack, self.device)["robust_top1"]

    def collapsed(self, previous: float | None, now: float) -> bool:
        """Whether ``now`` (this epoch's PGD top-1) is a collapse from ``previous`` (the last epoch's)."""
        if previous is None:
            return False
        return now < self.collapse_ratio * previous and previous - now > self.collapse_points
