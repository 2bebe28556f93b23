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

from visionlab.engine.config import ADV_TRAIN, TrainConfig
from visionlab.errors import ConfigError

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
    """The objective ``cfg`` asks for: cross-entropy with ``cfg.label_smoothing``, on clean images or, with
    ``cfg.adv_train``, on adversarial ones (:mod:`visionlab.robustness.training`; the smoothing applies to the
    training loss, never to what the adversary maximises)."""
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.adv_train is None:
        return ClassificationTask(criterion)
    from visionlab.robustness import FGSMRSTraining, NFGSMTraining, PGDTraining, TRADESTraining

    if cfg.adv_train == "pgd":
        return PGDTraining(cfg.adv_eps, steps=cfg.adv_steps, step=cfg.adv_step, mix=cfg.adv_mix, criterion=criterion)
    if cfg.adv_train == "fgsm-rs":
        return FGSMRSTraining(cfg.adv_eps, step=cfg.adv_step, mix=cfg.adv_mix, criterion=criterion)
    if cfg.adv_train == "n-fgsm":
        return NFGSMTraining(cfg.adv_eps, step=cfg.adv_step, mix=cfg.adv_mix, criterion=criterion)
    if cfg.adv_train == "trades":
        return TRADESTraining(cfg.adv_eps, beta=cfg.trades_beta, steps=cfg.adv_steps, step=cfg.adv_step,
                              criterion=criterion)  # fmt: skip
    raise ConfigError(f"must be one of {', '.join(ADV_TRAIN)} or unset, got {cfg.adv_train!r}", field="adv_train")
