"""What the trainer calls besides its loop: per-epoch callbacks, and the log of a rank that writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotation: the trainer imports this module
    from visionlab.engine.trainer import Trainer

__all__ = ["Callback", "NullLog"]


class NullLog:
    """The metrics log of a rank other than 0: writes nothing."""

    def write(self, record: dict[str, Any], step: int, scalars: Mapping[str, float] | None = None) -> None:
        """Dropped."""

    def close(self) -> None:
        """Nothing to close."""


class Callback:
    """A hook the trainer calls after every epoch (plots, reports); subclasses override what they need."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after the epoch's checkpoints and metrics record are written."""
