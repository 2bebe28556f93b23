"""Random labels (``shuffle_labels``): a fixed, seeded permutation of the labels (every class keeps its count) of
each dataset kind, in memory and on disk, under a Subset among its own items only, the images untouched, the
dataset given unchanged; any other dataset type refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from visionlab.data import ImageListDataset, TensorImageDataset, dataset_labels, load_dataset, shuffle_labels


def _gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labels(dataset: Dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(dataset))]


def test_the_labels_are_permuted_by_randperm_of_the_seed_keeping_each_class_count() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    dataset = TensorImageDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), labels, lambda x: x.float())
    shuffled = shuffle_labels(dataset, _gen())
    perm = torch.randperm(10, generator=_gen())
    assert shuffled.labels.tolist() == labels[perm].tolist()  # item i takes item perm[i]'s label
    assert shuffled.labels.tolist() != labels.tolist()
    assert torch.bincount(shuffled.labels).tolist() == [3, 2, 1, 4]
    assert shuffle_labels(dataset, _gen()).labels.tolist() == shuffled.labels.tolist()  # fixed by the seed
    assert dataset.labels.tolist() == labels.tolist()  # the dataset given is unchanged


def test_a_subset_permutes_among_its_own_items_only() -> None:
    labels = torch.arange(8)
    base = TensorDataset(torch.arange(8.0).view(8, 1), labels)
    shuffled = shuffle_labels(Subset(base, [1, 3, 4, 6]), _gen())
    assert isinstance(shuffled, Subset) and shuffled.indices == [1, 3, 4, 6]
    perm = torch.randperm(4, generator=_gen())
    assert _labels(shuffled) == torch.tensor([1, 3, 4, 6])[perm].tolist()
    assert [float(shuffled[i][0]) for i in range(4)] == [1.0, 3.0, 4.0, 6.0]  # images in place
    assert shuffled.dataset.tensors[1][[0, 2, 5, 7]].tolist() == [0, 2, 5, 7]  # the others keep theirs


def test_in_memory_splits_stay_in_memory_with_their_augmentation(fashion_mnist, cifar10) -> None:
    for spec in (f"fashion-mnist:{fashion_mnist.root}", f"cifar10:{cifar10.root}"):
        train = load_dataset(spec).train
        shuffled = shuffle_labels(train, _gen())
        assert type(shuffled) is TensorImageDataset and shuffled.in_memory
        assert shuffled.batch_augment == train.batch_augment and shuffled.images is train.images
        assert shuffled.labels.tolist() == train.labels[torch.randperm(len(train), generator=_gen())].tolist()


def test_file_based_splits_permute_their_list_entries(miniplaces: Path, image_folder: Path) -> None:
    for spec in (f"miniplaces:{miniplaces}", f"folder:{image_folder}"):
        train = load_dataset(spec, image_size=16, cache=True).train
        shuffled = shuffle_labels(train, _gen(1))
        assert type(shuffled) is ImageListDataset and shuffled.cache is train.cache  # the decoded images shared
        true = [e.label for e in train.entries]
        expected = [true[j] for j in torch.randperm(len(true), generator=_gen(1)).tolist()]
        assert _labels(shuffled) == expected == dataset_labels(shuffled).tolist()
        assert [e.path for e in shuffled.entries] == [e.path for e in train.entries]
        assert sorted(expected) == sorted(true)


def test_a_dataset_whose_labels_cannot_be_reached_is_refused_by_type() -> None:
    class Stream(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(1), i

    for bad in (Stream(), Subset(Stream(), [0]), TensorDataset(torch.zeros(2, 1))):
        with pytest.raises(TypeError, match=r"cannot permute the labels of a (Stream|TensorDataset) \(only "):
            shuffle_labels(bad, _gen())
