"""Builders shared by the trainer's tests (tests/engine): an in-memory Fashion-MNIST-shaped bundle whose labels
each test chooses, trainers and configurations over it or over a dataset on disk, readers of a run's
``metrics.jsonl``, forward wrappers that script a loss or a validation, a hand-made model for exact losses, and
recording stand-ins for the progress bars, the clock, the objective, a world of two and the robust monitor.
Plain helpers, imported by the test modules; the one fixture (``bars``) is in conftest.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.data import DataBundle
from visionlab.engine import TrainConfig, Trainer

from ..conftest import IdentityWorld

STEPS_PER_EPOCH = 6  # 96 training images, batch 16
TRAIN_LABELS = [(7 * i) % 10 for i in range(96)]  # every class, in a scrambled order
VAL = list(range(10)) * 2  # 20 validation images, two of each class


def memory_bundle(train_labels: list[int], val_labels: list[int]) -> DataBundle:
    """Fashion-MNIST-shaped random images with the given labels, in memory (no augmentation, no files)."""
    gen = torch.Generator().manual_seed(0)

    def split(labels: list[int]) -> TensorDataset:
        return TensorDataset(torch.rand(len(labels), 1, 28, 28, generator=gen), torch.tensor(labels))

    return DataBundle(
        kind="fashion-mnist", root="(memory)", train=split(train_labels), val=split(val_labels), num_classes=10,
        in_channels=1, image_size=28, mean=(0.5,), std=(0.25,), class_names=[str(i) for i in range(10)],
        recipe="small",
    )  # fmt: skip


def memory_trainer(out: Path, bundle, resume: Path | None = None, **kw) -> Trainer:
    """A Trainer on ``bundle`` writing to ``out``: 3 epochs of SGD at lr 0.05, batch 16, seed 7, a step record every
    2nd step, no progress bars or TensorBoard; ``kw`` overrides any TrainConfig field."""
    base = dict(
        data="fashion-mnist", out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7,
    )  # fmt: skip
    return Trainer(TrainConfig(**{**base, **kw}), bundle=bundle, resume=resume)


def memory_config(out: Path | None, **kw: Any) -> TrainConfig:
    """The configuration of :func:`memory_trainer`, but 1 epoch (``out=None``: the default run directory)."""
    base = dict(data="fashion-mnist", out=str(out) if out else None, epochs=1, batch_size=16, lr=0.05, warmup=0.5,
                workers=0, progress=False, tensorboard=False, print_freq=2, seed=7)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def built_trainer(cfg: TrainConfig, **kw: Any) -> Trainer:
    """A Trainer of ``cfg`` on ``memory_bundle(TRAIN_LABELS, VAL)`` without callbacks, built only (its log closed)."""
    trainer = Trainer(cfg, bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[], **kw)
    trainer.log.close()
    return trainer


def file_config(data: str, out: Path, **kw) -> TrainConfig:
    """The configuration of :func:`memory_trainer` for a dataset spec on disk (``tiny_fmnist``)."""
    base = dict(
        data=data, out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def records_of(run: Path, kind: str) -> list[dict]:
    """The records of one ``type`` (``"step"`` or ``"epoch"``) in a run's ``metrics.jsonl``, in order."""
    records = (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    return [r for r in records if r["type"] == kind]


def read_records(run: Path) -> list[dict]:
    """Every record of a run's ``metrics.jsonl``, in order."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensors_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Two state dicts with the same keys and bit-equal tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def nan_in_epoch(trainer: Trainer, epoch: int):
    """A forward for ``trainer.model`` whose training outputs turn NaN from the first step of ``epoch`` (1-based)."""
    forward, calls = trainer.model.forward, {"n": 0}

    def poisoned(images: torch.Tensor) -> torch.Tensor:
        out = forward(images)
        if trainer.model.training:
            calls["n"] += 1
            if calls["n"] > (epoch - 1) * len(trainer.train_loader):
                return out * float("nan")
        return out

    return poisoned


def scripted_validation(trainer: Trainer, right_per_epoch: list[bool]) -> None:
    """Validation predicts every label right (100% top-1) or class 0 for all (10% on VAL), epoch by epoch;
    training is left alone. The run's first validated epoch reads entry 0."""
    forward, seen = trainer.model.forward, {"n": 0}
    labels = torch.tensor(VAL)

    def scripted(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        if trainer.model.training:
            return logits
        epoch, first = divmod(seen["n"], len(VAL))
        seen["n"] += len(images)
        predicted = labels[first : first + len(images)] if right_per_epoch[epoch] else torch.zeros(len(images)).long()
        return torch.nn.functional.one_hot(predicted, 10).float()

    trainer.model.forward = scripted


class Corners(nn.Module):
    """Logits of a one-channel 2x2 image: its top-left, top-right and bottom-left pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 1, 0]], dim=1)


IMAGE = torch.tensor([[[[2.0, 0.0], [1.0, 3.0]]]])  # rows (2, 0) and (1, 3)
PLAIN = [2.0, 0.0, 1.0]  # (top-left, top-right, bottom-left)
# Mirrored left-right the image is rows (0, 2), (3, 1): logits (0, 2, 3), averaged with PLAIN: (1, 1, 2).
# (Mirrored top-bottom it would be (1, 3, 2) and the average (1.5, 1.5, 1.5); the sum instead of the mean (2, 2, 4).)
AVERAGED = [1.0, 1.0, 2.0]


def cross_entropy(logits: list[float], target: int, smoothing: float = 0.0) -> float:
    """-sum_k q_k log softmax(logits)_k with q = (1 - smoothing) one_hot(target) + smoothing / K."""
    lse = math.log(sum(math.exp(z) for z in logits))
    q = [(1 - smoothing) * (k == target) + smoothing / len(logits) for k in range(len(logits))]
    return sum(qk * (lse - z) for qk, z in zip(q, logits, strict=True))


class Bar:
    """One recorded progress bar: its iterable, description, whether enabled, postfixes and closes."""

    def __init__(self, iterable: Any, desc: str, enabled: bool) -> None:
        self.iterable, self.desc, self.enabled, self.postfixes, self.closed = iterable, desc, enabled, [], 0

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **values: str) -> None:
        self.postfixes.append(values)

    def close(self) -> None:
        self.closed += 1


class Bars:
    """Stands in for ``progress``: every bar it makes, with its description, whether enabled, postfixes, closes."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []

    def __call__(self, iterable: Any, *, desc: str, enabled: bool = True) -> Bar:
        self.bars.append(Bar(iterable, desc, enabled))
        return self.bars[-1]


class Clock:
    """``time`` for the trainer: ``perf_counter`` advances 0.5 s at every reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.5
        return self.now


class Losses:
    """Wraps a trainer's objective, keeping each step's loss and its batch's top-1 hits."""

    def __init__(self, trainer: Trainer) -> None:
        self.task, self.losses, self.hits = trainer.task, [], []
        trainer.task = self

    def __call__(self, model, images, target):
        loss, logits = self.task(model, images, target)
        self.losses.append(float(loss.detach()))
        self.hits.append(int((logits.argmax(1) == target).sum()))
        return loss, logits


class TwoRanks(IdentityWorld):
    """A world of two without a process group: collectives are identities; ``all_reduce`` records what it is
    given (dtype, shape, values)."""

    reduced: ClassVar[list[tuple[torch.dtype, tuple[int, ...], list]]] = []

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        self.reduced.append((tensor.dtype, tuple(tensor.shape), tensor.tolist()))
        return tensor


class Monitor:
    """Stands in for the robust monitor: scripted PGD top-1 per model, a collapse verdict, the calls recorded."""

    steps, n, val = 10, 9, list(range(7))

    def __init__(self, by_model: dict[int, float], collapsed: bool) -> None:
        self.by_model, self.verdict, self.calls = by_model, collapsed, []

    def measure(self, model: torch.nn.Module) -> float:
        self.calls.append(("measure", id(model)))
        return self.by_model[id(model)]

    def collapsed(self, last: float | None, now: float) -> bool:
        self.calls.append(("collapsed", last, now))
        return self.verdict


class WeightRecorder(Trainer):
    """A trainer keeping a copy of the trained weights after every optimizer step in ``history`` (the weight-average
    tests compare their averages with these)."""

    def _train_step(self, images: Any, target: Any) -> Any:
        out = super()._train_step(images, target)
        self.history.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return out
