"""Stochastic weight averaging (SWA): the equal-weight average of a model's weights over the end of training,
evaluated and checkpointed beside the model.

Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better Generalization": averaging the points a
run visits late in its schedule lands nearer the centre of a flat region than any one of them. Against robust
overfitting (a model's PGD accuracy falling over the last epochs of adversarial training, Rice et al. 2020) the
same averaging is among the remedies Chen et al. 2021 ("Robust Overfitting may be Mitigated by Properly Learned
Smoothening") and Gowal et al. 2020 ("Uncovering the Limits of Adversarial Training") measured; visionlab's own
runs found FGSM-RS losing 5-8 points of PGD-10 in its last epochs (BENCHMARKS.md), which an average over them
smooths instead of tracking.

The average starts at global step ``start_step`` (``round(swa_start * steps_per_epoch)``, like the warmup) and
takes the weights after every optimizer step from there on (``every="steps"``), or those at every epoch end from
there on (``every="epoch"``, the paper's once-per-cycle average with a cycle of one epoch). After ``n`` weights
``w_1 … w_n`` it is ``(w_1 + … + w_n) / n``, kept as the running mean ``avg ← avg + (w − avg) / (n + 1)``.

Batch-norm statistics: the running means and variances are averaged with the weights (equal weights, the same
rule), as the weight EMA does (:mod:`visionlab.engine.ema`); ``num_batches_tracked`` is the latest model's. Izmailov
et al. recompute them instead (``torch.optim.swa_utils.update_bn``: a forward pass over the training set with the
averaged weights) because the averaged network's activations differ from every averaged one's. Not here: the
average is validated every epoch, so the recomputation would cost a pass over the training set each epoch, and
under adversarial training the statistics that match what the network was trained to normalize are those of
adversarial inputs, which ``update_bn`` on the clean training images would not give (and crafting them for the
average would cost an attack epoch). The averaged statistics are those of the inputs the training forward passes
actually normalized, clean or adversarial; late in a decaying schedule the weights averaged are close, and so are
their statistics.

:class:`torch.optim.swa_utils.AveragedModel` keeps the average, with an averaging function of visionlab's own:
its default one fails on integer buffers (``addcdiv`` of ``num_batches_tracked``) when ``use_buffers=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from visionlab.engine.config import SWA_EVERY
from visionlab.errors import ConfigError

__all__ = ["WeightAverage"]


@torch.no_grad()
def _equal_weight(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor | int) -> None:
    """``avg ← avg + (w − avg) / (count + 1)`` for floating-point tensors; integer ones (``num_batches_tracked``)
    take the current value. ``AveragedModel`` calls this once per device and dtype."""
    if averaged[0].is_floating_point():
        torch._foreach_lerp_(averaged, current, 1.0 / (count + 1))
    else:
        torch._foreach_copy_(averaged, current)


class WeightAverage:
    """The SWA average of ``model``'s weights and batch-norm statistics, in an eval-mode copy without gradients.

    Args:
        model: the model being trained (the unwrapped module: not a DDP or compiled wrapper).
        start_step: the first global step (the number of optimizer steps taken) whose weights enter the average.
        every: ``"steps"`` (after every optimizer step from ``start_step`` on) or ``"epoch"`` (at every epoch end
            from ``start_step`` on).

    The trainer calls :meth:`after_step` after every optimizer step and :meth:`after_epoch` at every epoch end,
    each with the global step; which of the two averages is ``every``'s choice. :attr:`count` is how many weights
    the average holds (0: none yet, and :attr:`module` is still the copy of the starting weights).
    """

    def __init__(self, model: nn.Module, start_step: int, every: str = "epoch") -> None:
        if every not in SWA_EVERY:
            raise ConfigError(f"must be one of {', '.join(SWA_EVERY)}, got {every!r}", field="swa_every")
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
            raise ConfigError(f"must be an integer >= 0, got {start_step!r}", field="start_step")
        self.start_step, self.every = start_step, every
        # The count lives on the CPU (AveragedModel's default), so reading it never waits for a GPU.
        self.averaged = AveragedModel(model, multi_avg_fn=_equal_weight, use_buffers=True)
        self.averaged.module.eval().requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged network: the plain architecture, its state dict loads into a freshly built model."""
        return self.averaged.module

    @property
    def count(self) -> int:
        """How many weights the average holds."""
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        """Add ``model``'s current weights and buffers to the average."""
        self.averaged.update_parameters(model)

    def after_step(self, model: nn.Module, step: int) -> None:
        """After optimizer step number ``step`` (1-based: the steps taken so far): averaged with ``every="steps"``
        once ``step >= start_step``."""
        if self.every == "steps" and step >= self.start_step:
            self.update(model)

    def after_epoch(self, model: nn.Module, step: int) -> None:
        """At an epoch end, ``step`` optimizer steps taken: averaged with ``every="epoch"`` once
        ``step >= start_step``."""
        if self.every == "epoch" and step >= self.start_step:
            self.update(model)

    def state_dict(self) -> dict[str, Any]:
        """``{"model": the averaged weights (plain state dict of the architecture), "count": n}`` (the start and
        the cadence are the run's configuration)."""
        return {"model": self.module.state_dict(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (an exact resume continues the same average)."""
        self.module.load_state_dict(state["model"])
        self.averaged.n_averaged.fill_(int(state["count"]))
