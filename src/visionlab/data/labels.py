"""Random labels: a training set whose labels are permuted once, for the data-randomization test of explanation
maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", Sec. 3.2: a model trained on shuffled labels can only
memorize, so a map that explains the model should differ from the trained model's).

The permutation is ``torch.randperm(N, generator=generator)`` over the ``N`` items of the dataset given: item ``i``
gets the label item ``perm[i]`` had. A permutation, not a fresh draw, so every class keeps its count. It is drawn
once and fixed in the returned dataset: every epoch, and a run resumed from a checkpoint (which draws it again from
the same seed), sees the same wrong labels. The images, their order and their augmentation are untouched.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from visionlab.data.datasets import ImageListDataset
from visionlab.data.memory import TensorImageDataset

__all__ = ["SHUFFLABLE", "dataset_labels", "shuffle_labels"]

SHUFFLABLE = (TensorImageDataset, ImageListDataset, TensorDataset)
"""The dataset types :func:`shuffle_labels` takes (also under a :class:`~torch.utils.data.Subset`): the in-memory
Fashion-MNIST and CIFAR-10 splits, the file-based MiniPlaces and ImageFolder splits, and a two-tensor
``TensorDataset`` ``(images, labels)``."""


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Every item's label, ``(N,)`` int64, read without loading an image (a :data:`SHUFFLABLE` dataset or a
    Subset of one); raises ``TypeError`` naming any other type."""
    base, indices = _base(dataset)
    labels = _labels(base)
    return labels if indices is None else labels[torch.as_tensor(list(indices), dtype=torch.long)]


def shuffle_labels(dataset: Dataset, generator: torch.Generator) -> Dataset:
    """``dataset`` with its labels permuted by ``torch.randperm(len(dataset), generator=generator)`` (the module
    docstring): a shallow copy sharing the images (and an :class:`ImageListDataset`'s decoded-image cache), with
    the same type, so an in-memory split is still served in whole batches. A :class:`~torch.utils.data.Subset`
    (``--limit-train``) permutes the labels among its own items only. ``dataset`` itself is not modified.

    Raises ``TypeError`` naming the type when ``dataset`` is not one of :data:`SHUFFLABLE` (or a Subset of one):
    its labels cannot be reached without loading every image.
    """
    base, indices = _base(dataset)
    labels = _labels(base)
    index = torch.arange(len(labels)) if indices is None else torch.as_tensor(list(indices), dtype=torch.long)
    perm = torch.randperm(len(index), generator=generator)
    shuffled = labels.clone()
    shuffled[index] = labels[index][perm]
    copied = _with_labels(base, shuffled)
    return copied if indices is None else Subset(copied, indices)


def _base(dataset: Dataset) -> tuple[Dataset, Sequence[int] | None]:
    indices = None
    if isinstance(dataset, Subset):
        indices, dataset = dataset.indices, dataset.dataset
    if not isinstance(dataset, SHUFFLABLE) or (isinstance(dataset, TensorDataset) and len(dataset.tensors) != 2):
        names = ", ".join(t.__name__ for t in SHUFFLABLE)
        raise TypeError(f"cannot permute the labels of a {type(dataset).__name__} (only {names}, or a Subset of one)")
    return dataset, indices


def _labels(base: Dataset) -> torch.Tensor:
    if isinstance(base, TensorImageDataset):
        return base.labels
    if isinstance(base, ImageListDataset):
        return torch.tensor([entry.label for entry in base.entries], dtype=torch.long)
    assert isinstance(base, TensorDataset)
    return base.tensors[1].long()


def _with_labels(base: Dataset, labels: torch.Tensor) -> Dataset:
    copied = copy.copy(base)
    if isinstance(copied, TensorImageDataset):
        copied.labels = labels
    elif isinstance(copied, ImageListDataset):
        copied.entries = [dataclasses.replace(e, label=y) for e, y in zip(base.entries, labels.tolist(), strict=True)]
    else:
        copied.tensors = (base.tensors[0], labels.to(base.tensors[1].dtype))
    return copied
