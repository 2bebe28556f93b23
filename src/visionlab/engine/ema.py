"""A weight EMA: an exponential moving average of a model's weights, evaluated and checkpointed beside the model.

After every optimizer step ``ema ← d·ema + (1 − d)·weights`` for every floating-point parameter and buffer
(batch-norm running statistics included, as timm's ``ModelEmaV2`` does); integer buffers (``num_batches_tracked``)
are copied. The decay warms up, ``d_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates (TensorFlow's
``ExponentialMovingAverage(num_updates=…)`` rule), so the average forgets the random initialisation within the
first few hundred steps even in a short run: with ``decay`` 0.999 a 10-epoch Fashion-MNIST run at batch 128 has
4,680 steps, and a constant decay would still hold ``0.999^468`` ≈ 63% of epoch 1's weights at epoch 2.

``torch.optim.swa_utils.AveragedModel`` is not used: its average is keyed on an ``n_averaged`` tensor (the warm-up
rule would need a host sync each step to read it), it also averages integer buffers, and its state dict is
prefixed ``module.`` with an extra entry, where visionlab's EMA checkpoint must load into the plain architecture.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["WeightEMA"]


class WeightEMA:
    """The moving average of ``model``'s weights, in a copy of ``model`` kept in eval mode without gradients.

    Args:
        model: the model being trained (the unwrapped module: not a DDP or compiled wrapper).
        decay: the long-run decay ``d`` in (0, 1): the average spans about ``1 / (1 − d)`` steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def rate(self) -> float:
        """The decay the next :meth:`update` uses (warm-up rule in the module docstring)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights and buffers (one call per optimizer step)."""
        d = self.rate()
        averaged, current = [], []
        for ema, now in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema.is_floating_point():
                averaged.append(ema)
                current.append(now.detach())
            else:
                ema.copy_(now)
        torch._foreach_lerp_(averaged, current, 1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"model": the averaged weights (plain state dict of the architecture), "updates": t}`` (the decay is
        the run's configuration)."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (an exact resume continues the same average)."""
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
