"""Training objectives: forward + loss behind one callable, so the trainer never knows which one it runs.

An objective is any callable ``(model, images, target) -> (loss, logits)``: ``loss`` is the scalar the optimizer
minimises, ``logits`` the outputs the trainer's running top-1/top-5 are computed from (for adversarial
objectives, the logits of the examples the loss trained on). :class:`ClassificationTask` is the plain one;
adversarial training objectives (:mod:`visionlab.robustness`) have the same signature and plug in through
``Trainer(task=...)`` or :func:`build_task`. The robust monitor a run measures every epoch with is built here too
(:func:`build_monitor`), for the same reason: the trainer takes both from its caller, with these as defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from visionlab.engine.config import ADV_TRAIN, NOISE_WITH_ADV_TRAIN, TrainConfig
from visionlab.engine.loaders import limit
from visionlab.errors import ConfigError
from visionlab.robustness import (
    FGSMRSTraining,
    GaussianNoiseTraining,
    NFGSMTraining,
    PGDTraining,
    RobustMonitor,
    TRADESTraining,
)
from visionlab.runtime import DistContext

__all__ = ["ClassificationTask", "Objective", "build_monitor", "build_task"]


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
    training loss, never to what the adversary maximises), or, with ``cfg.noise_sigma``, on images with Gaussian
    noise (:class:`~visionlab.robustness.GaussianNoiseTraining`, for randomized smoothing)."""
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.noise_sigma is not None:
        if cfg.adv_train is not None:
            raise ConfigError(NOISE_WITH_ADV_TRAIN, field="noise_sigma")
        return GaussianNoiseTraining(cfg.noise_sigma, criterion=criterion)
    if cfg.adv_train is None:
        return ClassificationTask(criterion)
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


def build_monitor(cfg: TrainConfig, val: Dataset, device: torch.device, dist: DistContext) -> RobustMonitor | None:
    """The robust monitor ``cfg`` asks for: a :class:`~visionlab.robustness.RobustMonitor` (PGD top-1 on the first
    ``cfg.robust_val`` images of ``val``, cut to ``cfg.limit_val``, at ``cfg.adv_eps``) when the run trains
    adversarially or selects its best epoch by robust accuracy; else None (no cost)."""
    if cfg.adv_train is None and cfg.select_by != "robust":
        return None
    return RobustMonitor(
        limit(val, cfg.limit_val), cfg.adv_eps, n=cfg.robust_val, batch_size=cfg.batch_size, device=device, dist=dist
    )
