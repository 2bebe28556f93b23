"""Shared by the bench scripts: an in-memory 1x28x28, 10-class dataset bundle and a timed-epoch runner."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

from torch.utils.data import TensorDataset

from visionlab.data import DataBundle
from visionlab.engine import Trainer


def synthetic_bundle(data: TensorDataset, n_val: int = 256) -> DataBundle:
    """``data`` (float pixels ``(N, 1, 28, 28)``, labels) as a :class:`DataBundle` the trainer accepts; the
    validation split is its first ``n_val`` images."""
    x, y = data.tensors
    return DataBundle(
        kind="synthetic", root="", train=data, val=TensorDataset(x[:n_val], y[:n_val]), num_classes=10,
        in_channels=1, image_size=28, mean=(0.5,), std=(0.5,), class_names=[str(i) for i in range(10)],
        recipe="small",
    )  # fmt: skip


def epoch_runner(trainer: Trainer) -> Callable[[], None]:
    """A callable running one more :meth:`Trainer.train_one_epoch` each call (stderr swallowed, so a progress bar
    costs what it costs to draw but prints nothing)."""
    counter = iter(range(10**9))

    def epoch() -> None:
        with contextlib.redirect_stderr(io.StringIO()):
            trainer.train_one_epoch(next(counter))

    return epoch
