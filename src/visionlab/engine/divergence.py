"""A loss that became NaN or infinite: the error that stops the run, and the check that raises it at the first
logged step at or after the bad one, the same on every rank."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch

from visionlab.engine.checkpoint import CHECKPOINT
from visionlab.runtime import DistContext, RunningStats

__all__ = ["TrainingDiverged", "checked_loss", "diverged"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched.

    ``detail`` says where and what was kept; :meth:`advice` names the config fields to change, under the names a
    caller passes (the command line passes its flags).
    """

    ADVICE_FIELDS = ("lr", "warmup", "clip_grad")

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"{detail}. {self.advice()}")

    def advice(self, names: Mapping[str, str] | None = None) -> str:
        lr, warmup, clip = ((names or {}).get(f, f) for f in self.ADVICE_FIELDS)
        return f"Lower {lr}, raise {warmup} or keep {clip} above 0."


def diverged(run_dir: Path, epoch: int, value: float, where: str) -> TrainingDiverged:
    """The error for a loss of ``value`` (NaN or infinite) at epoch ``epoch`` (0-based), ``where`` saying at which
    step; it says whether ``run_dir`` keeps a good checkpoint."""
    last = run_dir / CHECKPOINT
    keep = f"the last good checkpoint {last} is untouched" if last.exists() else "no checkpoint was written"
    return TrainingDiverged(f"loss is {value} at epoch {epoch + 1}, {where}; stopping ({keep})")


def checked_loss(
    loss: torch.Tensor, stats: RunningStats, dist: DistContext, *, run_dir: Path, epoch: int, step: int, since: int
) -> float:
    """The loss of logged step ``step`` averaged over the ranks, once it and the epoch's running loss sum are finite.

    Why both: the running sum holds every step of the epoch, so a loss that was NaN or infinite at an unlogged
    step since the last logged one (global steps ``since`` to ``step - 1``) is caught here too, even when the steps
    after it are finite again, instead of only at the end of the epoch. Raises :class:`TrainingDiverged` naming
    the step (or the unlogged steps it lies among) and the epoch. One all-reduce of the two numbers: every rank
    sees the same values, so all stop together.
    """
    both = dist.all_reduce(torch.stack([loss.detach().double(), stats.loss]))
    value, running = (float(v) for v in both.tolist())
    value /= dist.world_size
    if not math.isfinite(value):
        raise diverged(run_dir, epoch, value, f"step {step}")
    if not math.isfinite(running):
        last = step - 1
        steps = f"step {last}" if since == last else f"one of steps {since} to {last}"
        raise diverged(
            run_dir, epoch, running, f"{steps} (not logged: the epoch's running loss caught it at step {step})"
        )
    return value
