"""Model modes: :func:`eval_mode`, used by every analysis that must leave a model as it found it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode; on exit, even by an exception, give every submodule back its own ``training``
    flag. ``model.train(was_training)`` would not: it sets one flag on every submodule, so a model whose backbone
    was frozen in eval mode under a training head would come back all in training mode.

    Used by every analysis that must leave the model as it found it (attacks, saliency, evaluation, the report)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
