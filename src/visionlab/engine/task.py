"""Training objectives: forward + loss behind one callable, so the trainer never knows which one it runs.

An objective is any callable ``(model, images, target) -> (loss, logits)``: ``loss`` is the scalar the optimizer
minimises, ``logits`` the outputs the trainer's running top-1/top-5 are computed from (for adversarial
objectives, the logits of the examples the loss trained on). :class:`ClassificationTask` is the plain one;
adversarial training objectives (:mod:`visionlab.robustness`) have the same signature and plug in through
``Trainer(task=...)`` or :func:`build_task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from visionlab.engine.config import TrainConfig

__all__ = ["ClassificationTask", "Objective", "build_task"]


class Objective(Protocol):
    """What the trainer calls once per step, with the model in train mode."""

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class ClassificationTask:
    """Plain supervised training: ``criterion(model(images), target)``."""

    criterion: nn.Module

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        return self.criterion(logits, target), logits


def build_task(cfg: TrainConfig) -> Objective:
    """The objective ``cfg`` asks for: cross-entropy with ``cfg.label_smoothing``."""
    return ClassificationTask(nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
