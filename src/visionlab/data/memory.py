"""In-memory batches: datasets that fit in memory as one ``uint8`` tensor (Fashion-MNIST, CIFAR-10) are served a
batch at a time by indexing that tensor, with the augmentation applied to the whole batch at once.

Why: a :class:`~torch.utils.data.DataLoader` over such a dataset runs Python per image (``__getitem__``, a
``transforms.v2`` pipeline, collation) and, to keep up, a worker process that competes with the training
threads for the same cores. Here one batch is one gather, one flip mask and one crop gather, in the main
process. Measured figures: BENCHMARKS.md (``bench/input.py``).

Randomness (the epoch's permutation, flips, crop offsets, erased boxes, noise) comes only from the generator the
loader is given, so a run resumed from a checkpoint (which stores that generator's state) sees the very same
batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from visionlab.data.noise import noise_augment

__all__ = [
    "BatchAugment",
    "InMemoryLoader",
    "TensorImageDataset",
    "in_memory_source",
    "is_in_memory",
    "parse_augment",
]

Transform = Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class BatchAugment:
    """Per-image random augmentation of a ``uint8`` batch ``(B, C, H, W)``, drawn from a generator.

    Args:
        flip: mirror each image left-right with probability 1/2 (``v2.RandomHorizontalFlip``).
        pad: random crop of the original size from the image zero-padded by ``pad`` pixels on every side, offsets
            uniform in ``[0, 2 pad]`` (``v2.RandomCrop(size, padding=pad)``); 0 disables it.
        erase: probability of random erasing (``v2.RandomErasing``'s defaults: a box of 2-33% of the image area,
            aspect ratio log-uniform in [0.3, 3.3], set to 0), applied after crop and flip; a box drawn larger
            than the image is clipped to it (torchvision redraws instead). 0 disables it.
        noise: probability of one of ImageNet-C's noise corruptions (Gaussian, shot or impulse noise, uniformly,
            at a severity drawn uniformly in 1-5, with the benchmark's parameters:
            :func:`~visionlab.data.noise.noise_augment`), applied last, to the image as the other steps left it. 0
            disables it. A model trained with it has seen the corruption benchmark's three noise corruptions: those
            rows are no longer held out (Hendrycks & Dietterich's protocol).

    :func:`parse_augment` builds one from a command-line spec such as ``"flip,crop=2,erase=0.5,noise=0.5"``.
    """

    flip: bool = True
    pad: int = 0
    erase: float = 0.0
    noise: float = 0.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        if self.pad > 0:
            padded = torch.nn.functional.pad(images, (self.pad,) * 4)
            dy = torch.randint(0, 2 * self.pad + 1, (b,), generator=generator)
            dx = torch.randint(0, 2 * self.pad + 1, (b,), generator=generator)
            rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(b)[:, None, None, None]
            channel = torch.arange(images.shape[1])[None, :, None, None]
            images = padded[batch, channel, rows, cols]
        if self.flip:
            mirror = torch.rand(b, generator=generator) < 0.5
            images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
        if self.erase > 0:
            images = self._erase(images, generator)
        if self.noise > 0:
            images = noise_augment(images, self.noise, generator)
        return images

    def _erase(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        area = torch.empty(b).uniform_(0.02, 0.33, generator=generator) * (h * w)
        ratio = torch.empty(b).uniform_(math.log(0.3), math.log(3.3), generator=generator).exp()
        eh = (area * ratio).sqrt().round().clamp(1, h).long()
        ew = (area / ratio).sqrt().round().clamp(1, w).long()
        top = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
        left = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
        chosen = torch.rand(b, generator=generator) < self.erase
        rows, cols = torch.arange(h), torch.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
        box = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
        return images.masked_fill(box[:, None], 0)


def parse_augment(spec: str) -> BatchAugment:
    """``"none"`` or comma-separated ``flip``, ``crop=PAD`` (pixels), ``erase=P``, ``noise=P`` (probabilities) -> a
    :class:`BatchAugment`; raises ``ValueError`` naming the token at fault."""
    values: dict[str, Any] = {"flip": False, "pad": 0, "erase": 0.0, "noise": 0.0}
    tokens = [t.strip() for t in spec.split(",")]
    if tokens == ["none"]:
        return BatchAugment(flip=False)
    for token in tokens:
        name, _, value = token.partition("=")
        try:
            if name == "flip" and not value:
                values["flip"] = True
            elif name == "crop" and value and 1 <= int(value) <= 64:
                values["pad"] = int(value)
            elif name in ("erase", "noise") and value and 0.0 < float(value) <= 1.0:
                values[name] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{token!r} in {spec!r}: expected 'none' or comma-separated flip, crop=PAD (1-64 px), "
                "erase=P (0 < P <= 1), noise=P (0 < P <= 1)"
            ) from None
    return BatchAugment(**values)


class TensorImageDataset(Dataset):
    """Images held in memory as a ``uint8`` tensor ``(N, C, H, W)`` with integer labels ``(N,)``.

    ``transform`` serves one image (``dataset[i]``). ``in_memory=True`` lets the engine serve whole batches
    instead (:class:`~visionlab.data.memory.InMemoryLoader`), augmented by ``batch_augment`` — which must then
    be ``transform``'s batch equivalent (None: ``transform`` only converts to float). Assigning another
    ``transform`` later turns the batch path off."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Transform,
        *,
        in_memory: bool = False,
        batch_augment: BatchAugment | None = None,
    ) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise ValueError(f"expected uint8 (N, C, H, W) images and N labels, got {tuple(images.shape)}")
        self.images, self.labels, self._transform = images, labels.long(), transform
        self.in_memory, self.batch_augment = in_memory, batch_augment

    @property
    def transform(self) -> Transform:
        return self._transform

    @transform.setter
    def transform(self, transform: Transform) -> None:
        """A new per-image transform (``eval`` converting channels or size, say) has no batch equivalent: the
        dataset is served image by image from then on."""
        self._transform, self.in_memory, self.batch_augment = transform, False, None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def _in_memory_base(dataset: Dataset) -> tuple[Any, Sequence[int] | None] | None:
    """The in-memory ``TensorImageDataset`` behind ``dataset`` (itself or a :class:`Subset` of it) and the
    subset's indices (None: all), or None when ``dataset`` is not served in batches. Copies nothing."""
    indices = None
    if isinstance(dataset, Subset):
        indices, dataset = dataset.indices, dataset.dataset
    if not isinstance(dataset, TensorImageDataset) or not dataset.in_memory:
        return None
    return dataset, indices


def is_in_memory(dataset: Dataset) -> bool:
    """Whether :class:`InMemoryLoader` can serve ``dataset`` (cheap: nothing is indexed)."""
    return _in_memory_base(dataset) is not None


def in_memory_source(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, BatchAugment | None] | None:
    """``(uint8 images, labels, augmentation)`` when ``dataset`` (or a :class:`Subset` of it) is held in memory
    with a batch augmentation (``TensorImageDataset.batch_augment``, None meaning none), else None: such a
    dataset has only a per-image transform and needs a DataLoader. A subset's images are gathered (a copy)."""
    found = _in_memory_base(dataset)
    if found is None:
        return None
    base, indices = found
    if indices is None:
        return base.images, base.labels, base.batch_augment
    index = torch.as_tensor(list(indices))
    return base.images[index], base.labels[index], base.batch_augment


class InMemoryLoader:
    """Batches ``(float32 images in [0, 1] (B, C, H, W), int64 labels (B,))`` of an in-memory dataset.

    Same contract as the DataLoader it replaces (:func:`visionlab.engine.trainer.make_loader`): ``shuffle``
    draws a new permutation from ``generator`` every epoch, ``drop_last`` drops a ragged last batch, ``len`` is
    the number of batches and ``dataset`` the dataset served. Without a ``generator`` it uses its own, seeded 0,
    so even then two loaders over the same data give the same batches.

    ``shard = (rank, world_size)`` (distributed training): ``batch_size`` is the global batch; the permutation
    and the augmentation are drawn for the whole global batch (the same draws on every rank, whose generators are
    in the same state) and this rank keeps slice ``rank`` of ``world_size`` equal slices — so N processes see
    exactly the images, flips and crops one process would see with the same global batch.

    ``pin_memory`` (what :func:`~visionlab.engine.make_loader` sets for a CUDA device): each batch is yielded in
    page-locked memory, so the trainer's ``.to(device, non_blocking=True)`` overlaps the copy with the GPU's work
    instead of staging it synchronously (as a DataLoader's ``pin_memory`` does).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
        pin_memory: bool = False,
    ) -> None:
        rank, world = shard
        if not 0 <= rank < world or batch_size % world or (world > 1 and not drop_last):
            raise ValueError(f"shard {shard} of a global batch of {batch_size}: needs 0 <= rank < world_size, a "
                             "batch divisible by world_size and drop_last")  # fmt: skip
        source = in_memory_source(dataset)
        if source is None:
            raise TypeError(f"{type(dataset).__name__} is not an in-memory dataset with a batch augmentation")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.images, self.labels, augment = source
        self.augment = augment if shuffle else None  # evaluation batches are never augmented
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.shard = slice(rank * batch_size // world, (rank + 1) * batch_size // world) if world > 1 else None
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            chunk = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            index = order[chunk] if order is not None else chunk
            images = self.images[index]
            labels = self.labels[index]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            if self.shard is not None:
                images, labels = images[self.shard], labels[self.shard]
            images = images.to(torch.float32).mul_(1.0 / 255)  # = v2.ToDtype(scale=True)
            yield (images.pin_memory(), labels.pin_memory()) if self.pin_memory else (images, labels)
