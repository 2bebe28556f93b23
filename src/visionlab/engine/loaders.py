"""Batches for training and evaluation: the DataLoader or in-memory loader of a dataset, sharded over the ranks
of a distributed job, its workers seeded so that a resumed run draws what the uninterrupted one drew."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from visionlab.data.device_augment import DeviceAugmentLoader, DeviceAugmentSource
from visionlab.data.memory import InMemoryLoader, is_in_memory
from visionlab.runtime.distributed import DistContext, ShardedBatchSampler, training_batches

__all__ = ["RankSeed", "limit", "make_device_loader", "make_loader"]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    dist: DistContext | None = None,
) -> DataLoader | InMemoryLoader:
    """Batches of ``dataset``; training shuffles with ``generator`` and drops a ragged last batch (unless it is the
    only one: :func:`~visionlab.runtime.distributed.training_batches`).

    A dataset held in memory (Fashion-MNIST, CIFAR-10) is served by an :class:`InMemoryLoader` (whole-batch
    indexing and augmentation in this process; ``workers`` unused), anything else by a DataLoader; both pin their
    batches for a CUDA device, so the trainer's ``non_blocking`` copies overlap. Its workers
    are not persistent: each epoch's workers are seeded from ``generator``, which is what makes resume exact.

    Distributed training (``dist`` with several ranks): ``batch_size`` is the global batch and each rank gets its
    slice of every global batch (:class:`~visionlab.runtime.distributed.ShardedBatchSampler`); DataLoader workers
    add the rank to their seed so ranks do not draw the same augmentation. Evaluation loaders are not sharded
    here: pass :func:`~visionlab.runtime.distributed.shard_dataset`'s share."""
    dist = dist or DistContext()
    batch_size, drop_last = training_batches(len(dataset), batch_size, dist) if train else (batch_size, False)
    if is_in_memory(dataset):
        return InMemoryLoader(
            dataset, batch_size, shuffle=train, drop_last=drop_last, generator=generator,
            shard=(dist.rank, dist.world_size) if train else (0, 1), pin_memory=device.type == "cuda",
        )  # fmt: skip
    common: dict[str, Any] = dict(num_workers=workers, pin_memory=device.type == "cuda")
    if not train:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    sampler = ShardedBatchSampler(len(dataset), batch_size, generator, drop_last=drop_last, ctx=dist)
    return DataLoader(dataset, batch_sampler=sampler, generator=generator, worker_init_fn=RankSeed(dist), **common)


def make_device_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    payload: str,
    workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    dist: DistContext | None = None,
) -> DeviceAugmentLoader:
    """Training batches of a file dataset augmented on ``device`` (:mod:`visionlab.data.device_augment`): the
    DataLoader of :func:`make_loader` — the same sampler, generator, worker seeds and pinned memory, so the same
    images and the same random draws as the CPU path — over a :class:`DeviceAugmentSource` of ``payload``
    (``"image"``, ``"encoded"``, or ``"index"``: gathered from the dataset's cache in this process, ``workers``
    ignored). Raises what :class:`DeviceAugmentSource` raises for a dataset it cannot serve."""
    dist = dist or DistContext()
    source = DeviceAugmentSource(dataset, payload)
    batch_size, drop_last = training_batches(len(dataset), batch_size, dist)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    sampler = ShardedBatchSampler(len(dataset), batch_size, generator, drop_last=drop_last, ctx=dist)
    loader = DataLoader(
        source, batch_sampler=sampler, generator=generator, worker_init_fn=RankSeed(dist), collate_fn=source.collate,
        num_workers=0 if payload == "index" else workers, pin_memory=device.type == "cuda" and payload != "index",
    )  # fmt: skip
    return DeviceAugmentLoader(source, loader, device)


class RankSeed:
    """``worker_init_fn`` offsetting a DataLoader worker's seeds by its rank (workers of rank 0 keep theirs)."""

    def __init__(self, dist: DistContext) -> None:
        self.dist = dist

    def __call__(self, worker_id: int) -> None:
        if self.dist.rank:
            seed = self.dist.rank_seed(torch.initial_seed())
            torch.manual_seed(seed)
            random.seed(seed)


def limit(dataset: Dataset, n: int | None) -> Dataset:
    """The first ``n`` items of ``dataset`` (``--limit-train`` / ``--limit-val``): ``dataset`` itself when ``n``
    is None or not below its length, else a :class:`~torch.utils.data.Subset`."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))
