"""Accuracy, running averages and the run directory's metric logs (metrics.jsonl + TensorBoard)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from visionlab.errors import UserError
from visionlab.runtime.distributed import DistContext

__all__ = ["MetricsLog", "RunningStats", "WaitTimer", "read_metrics", "topk_correct"]

T = TypeVar("T")


@torch.no_grad()
def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at the class count).
    Returns 0-dim tensors on the logits' device, so no host sync happens here."""
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(target.unsqueeze(1))
    return [hit[:, : min(k, maxk)].any(dim=1).sum() for k in ks]


class RunningStats:
    """Sums of loss and top-1/top-5 hits over an epoch, kept on the device until read."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.top1 = torch.zeros((), dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.n = 0

    def update(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        batch = target.shape[0]
        c1, c5 = topk_correct(logits, target)
        self.loss += loss.detach().double() * batch
        self.top1 += c1
        self.top5 += c5
        self.n += batch

    def all_reduce(self, ctx: DistContext) -> RunningStats:
        """Sum the counts of every rank into this one (a no-op in a world of one); returns ``self``. Exact:
        top-1/top-5 hits and the image count are integers, the loss sum is float64."""
        if ctx.enabled:
            counts = torch.stack([self.top1, self.top5, torch.tensor(self.n, device=self.top1.device)])
            ctx.all_reduce(counts)
            ctx.all_reduce(self.loss)
            self.top1, self.top5, self.n = counts[0], counts[1], int(counts[2])
        return self

    def summary(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "loss": self.loss.item() / n,
            "top1": 100.0 * self.top1.item() / n,
            "top5": 100.0 * self.top5.item() / n,
            "n": self.n,
        }


# What the readers of metrics.jsonl (the report, `visionlab plot`, a resume) take from each record type without
# a default; the trainer writes all of them. A hand-edited or foreign file missing one fails here, naming its
# line, instead of as a bare KeyError or TypeError inside a plot.
_REQUIRED_NUMBERS = {"epoch": ("epoch", "lr", "train_loss", "val_loss"), "step": ("epoch", "step", "lr")}


class WaitTimer(Generic[T]):
    """Iterate ``iterable`` (a loader), adding up in ``waited`` the seconds spent getting each item — starting the
    iteration (DataLoader workers) included — and in ``elapsed`` the seconds from the start to the end of the
    iteration. ``waited`` is the time the loop stood idle for data, ``elapsed - waited`` the time it spent on its
    own work (on CUDA: launching it, or waiting for the device when its queue is full).

    ``sync`` (default none) is called once after the last item, before the clock is read for ``elapsed``: on CUDA
    ``torch.cuda.synchronize``, so ``elapsed`` also holds the work the loop queued on the device and the device had
    not yet done (up to the steps between two host syncs), instead of ending when the last step was launched.

    ``clock`` (seconds) is a parameter so tests drive time by hand."""

    def __init__(
        self,
        iterable: Iterable[T],
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self.iterable, self.clock, self.sync = iterable, clock, sync
        self.waited = self.elapsed = 0.0

    def __iter__(self) -> Iterator[T]:
        start = before = self.clock()
        iterator = iter(self.iterable)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            finally:
                self.waited += self.clock() - before
            yield item
            before = self.clock()
        if self.sync is not None:
            self.sync()
        self.elapsed = self.clock() - start


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Records of ``run_dir/metrics.jsonl`` (a missing file reads as none). A line that is not a JSON object, or
    an epoch or step record without a number for one of the keys its readers need, is a
    :class:`~visionlab.errors.UserError` naming file and line."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON ({exc})") from exc
            _check_record(record, f"{path}:{number}")
            records.append(record)
    return records


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise UserError(f"{where}: not a JSON object (got {type(record).__name__})")
    kind = record.get("type")
    required = _REQUIRED_NUMBERS.get(kind, ()) if isinstance(kind, str) else ()
    missing = [key for key in required if type(record.get(key)) not in (int, float)]  # bool is no number here
    if missing:
        raise UserError(f"{where}: {kind} record without a number for {', '.join(missing)}")


class MetricsLog:
    """Appends records to ``metrics.jsonl`` and scalars to TensorBoard in one place.

    On resume the records after the resumed epoch (from the interrupted, replayed epoch) are dropped first, so
    the file reads as if the run had never stopped.
    """

    def __init__(
        self,
        run_dir: Path,
        keep_through_epoch: int | None = None,
        tensorboard: bool = True,
        history_from: Path | None = None,
    ) -> None:
        """``keep_through_epoch`` None starts an empty log; an epoch number keeps the records through that
        epoch, read from ``history_from`` (the directory the run is resumed from) or else from ``run_dir``."""
        self.path = run_dir / "metrics.jsonl"
        if keep_through_epoch is None:
            self.path.write_text("", encoding="utf-8")
        else:
            source = history_from if history_from is not None else run_dir
            kept = [r for r in read_metrics(source) if r.get("epoch", -1) <= keep_through_epoch]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any], step: int, scalars: dict[str, float]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
