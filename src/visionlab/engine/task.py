"""Training objectives: forward + loss behind one callable, so the trainer never knows which one it runs.

An objective is any callable ``(model, images, target) -> (loss, logits)``: ``loss`` is the scalar the optimizer
minimises, ``logits`` the outputs the trainer's running top-1/top-5 are computed from (for adversarial
objectives, the logits of the examples the loss trained on). :class:`ClassificationTask` is the plain one;
adversarial training objectives (:mod:`visionlab.robustness`) have the same signature and plug in through
``Trainer(task=...)`` or :func:`build_task`. The robust monitor a run measures every epoch with is built here too
(:func:`build_monitor`), for the same reason: the trainer takes both from its caller, with these as defaults.
An objective that depends on the training step (the ε curriculum, :class:`EpsilonRamp`) is a
:class:`StepScheduled` one: the trainer tells it the global step before each call, so a resumed run, which restores
that step, trains exactly as the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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

__all__ = ["ClassificationTask", "EpsilonRamp", "Objective", "StepScheduled", "build_monitor", "build_task"]


class Objective(Protocol):
    """What the trainer calls once per step, with the model in train mode."""

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class StepScheduled(Protocol):
    """An objective whose behaviour is a function of the global optimizer step: the trainer calls
    :meth:`set_step` with the number of steps already taken before each call (0 for the first step)."""

    def set_step(self, step: int) -> None: ...


class RadiusScalable(Protocol):
    """An adversarial objective whose training radius (and step sizes with it) can be scaled: every objective of
    :mod:`visionlab.robustness.training`."""

    def set_radius_scale(self, factor: float) -> None: ...

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class EpsilonRamp:
    """The ε curriculum: adversarial training whose radius grows linearly from 0 to the objective's own over the
    first ``ramp_steps`` optimizer steps, every step size scaled with it (``visionlab train --adv-eps-ramp E``,
    ``ramp_steps = round(E * steps_per_epoch)`` as for the learning-rate warmup).

    At global step ``t`` (0-based) the objective trains at ``min(1, t / ramp_steps)`` times its radius: the first
    step on clean images (radius 0), the full radius from step ``ramp_steps`` on. A function of the step alone, so
    an exact resume, which restores the step, continues the same curriculum. Starting adversarial training from a
    small radius is an old remedy for its unstable first epochs (Gowal et al. 2018, "On the Effectiveness of
    Interval Bound Propagation", ramp ε linearly from 0; Cai et al. 2018's curriculum adversarial training grows
    the attack's strength instead); the robust monitor and the selection of the best epoch always attack at the
    full radius. The trainer passes the step (:class:`StepScheduled`).

    Args:
        objective: an adversarial objective of :mod:`visionlab.robustness.training` (scaled in place).
        ramp_steps: steps to reach the full radius, >= 1.
    """

    objective: RadiusScalable
    ramp_steps: int
    step: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.ramp_steps, bool) or not isinstance(self.ramp_steps, int) or self.ramp_steps < 1:
            raise ConfigError(f"must be an integer >= 1, got {self.ramp_steps!r}", field="ramp_steps")

    def factor(self, step: int) -> float:
        """The fraction of the full radius trained at global step ``step`` (0-based): ``min(1, step / ramp_steps)``."""
        return min(1.0, step / self.ramp_steps)

    def set_step(self, step: int) -> None:
        """The global step of the next call (the trainer's step counter before it is taken)."""
        self.step = step

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.objective.set_radius_scale(self.factor(self.step))
        return self.objective(model, images, target)


@dataclass
class ClassificationTask:
    """Plain supervised training: ``criterion(model(images), target)``."""

    criterion: nn.Module

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        return self.criterion(logits, target), logits


def build_task(cfg: TrainConfig, steps_per_epoch: int | None = None) -> Objective:
    """The objective ``cfg`` asks for: cross-entropy with ``cfg.label_smoothing``, on clean images or, with
    ``cfg.adv_train``, on adversarial ones (:mod:`visionlab.robustness.training`; the smoothing applies to the
    training loss, never to what the adversary maximises), or, with ``cfg.noise_sigma``, on images with Gaussian
    noise (:class:`~visionlab.robustness.GaussianNoiseTraining`, for randomized smoothing). With
    ``cfg.adv_eps_ramp`` > 0 the adversarial objective is wrapped in :class:`EpsilonRamp` over
    ``round(cfg.adv_eps_ramp * steps_per_epoch)`` steps (at least 1), so ``steps_per_epoch`` is then required."""
    objective = _objective(cfg)
    if not cfg.adv_eps_ramp:
        return objective
    if steps_per_epoch is None:
        raise ConfigError("needs the number of steps per epoch to count its steps", field="adv_eps_ramp")
    if cfg.adv_train is None:
        raise ConfigError("needs adv_train (it ramps the radius of the training attack)", field="adv_eps_ramp")
    return EpsilonRamp(objective, max(1, round(cfg.adv_eps_ramp * steps_per_epoch)))  # type: ignore[arg-type]


def _objective(cfg: TrainConfig) -> Objective:
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
