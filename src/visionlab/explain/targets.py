"""The class each map explains: checking a ``target`` argument, shared by every explanation method.

A target is ``None`` (the model's own top prediction, decided by the method), an ``int`` for every image, or an
integer tensor ``(N,)``; :func:`check_target` turns the last two into a long tensor on the images' device, and
:func:`check_classes` checks the classes against the model's output once it is known.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visionlab.errors import ConfigError

__all__ = ["check_classes", "check_target"]


def check_target(target: Tensor | int | None, images: Tensor, who: str = "saliency") -> Tensor | None:
    """``None`` stays ``None``; an ``int`` or an integer ``(N,)`` tensor becomes a long tensor on the images'
    device. Anything else raises ``ValueError`` led by ``who`` (the function the user called)."""
    n = len(images)
    if target is None:
        return None
    if isinstance(target, int) and not isinstance(target, bool):
        return torch.full((n,), target, dtype=torch.long, device=images.device)
    if (
        not isinstance(target, Tensor)
        or target.is_floating_point()
        or target.is_complex()
        or target.dtype == torch.bool
    ):
        raise ValueError(f"{who}: target must be None, an int or an integer tensor (N,), got {target!r}")
    if target.shape != (n,):
        raise ValueError(f"{who}: target must have shape ({n},) (one class per image), got {tuple(target.shape)}")
    return target.to(device=images.device, dtype=torch.long)


def check_classes(target: Tensor, num_classes: int) -> None:
    """Raise ``ConfigError(field="target")`` unless every class of ``target`` is in ``[0, num_classes)``."""
    if len(target) and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ConfigError(
            f"class indices must be in [0, {num_classes}), got {target.min().item()}..{target.max().item()}",
            field="target",
        )
