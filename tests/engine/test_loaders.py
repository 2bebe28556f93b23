"""``engine/loaders.py``: the training loader shuffles from the given generator and drops the ragged batch, the
validation loader keeps order and every item, ``limit`` takes the first n, each rank gets an equal slice of a
set no larger than one batch, and DataLoader workers of rank r are seeded r large primes apart."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from visionlab.data import TensorImageDataset
from visionlab.data.transforms import to_float_transform
from visionlab.engine import (
    limit,
    make_loader,
)
from visionlab.engine.loaders import RankSeed
from visionlab.runtime.distributed import (
    DistContext,
    ShardedBatchSampler,
)

CPU = torch.device("cpu")


def test_loaders_shuffle_and_drop_the_ragged_batch_only_for_training() -> None:
    data = TensorDataset(torch.arange(10.0), torch.arange(10))
    gen = torch.Generator()
    train = make_loader(data, 4, train=True, workers=0, device=CPU, generator=gen)
    sampler = train.batch_sampler
    assert isinstance(sampler, ShardedBatchSampler) and (sampler.batch_size, sampler.drop_last) == (4, True)
    assert (train.num_workers, train.pin_memory) == (0, False)
    assert train.generator is gen and sampler.generator is gen
    assert len(train) == 2  # 10 images, batches of 4: the ragged 2 dropped
    state = gen.get_state()
    replay = torch.Generator().set_state(state)
    torch.empty((), dtype=torch.int64).random_(generator=replay)  # the DataLoader's worker base seed comes first
    order = torch.randperm(10, generator=replay).tolist()
    assert [b[1].tolist() for b in train] == [order[:4], order[4:8]]  # then one permutation per epoch
    assert gen.get_state().equal(replay.get_state())  # and nothing else is drawn
    val = make_loader(data, 4, train=False, workers=0, device=CPU)
    assert not val.drop_last and isinstance(val.sampler, torch.utils.data.SequentialSampler) and len(val) == 3
    small = make_loader(data, 10, train=True, workers=0, device=CPU)
    assert not small.batch_sampler.drop_last and len(small) == 1  # one batch of everything is never dropped
    assert make_loader(data, 4, train=False, workers=0, device=torch.device("cuda")).pin_memory
    assert make_loader(data, 4, train=False, workers=2, device=CPU).num_workers == 2


def test_limit_takes_the_first_n_items() -> None:
    data = TensorDataset(torch.arange(5))
    assert limit(data, None) is data
    assert limit(data, 5) is data
    assert limit(data, 9) is data
    four = limit(data, 4)
    assert isinstance(four, Subset) and four.dataset is data and list(four.indices) == [0, 1, 2, 3]
    assert [int(four[i][0]) for i in range(4)] == [0, 1, 2, 3]


def test_both_loaders_give_each_rank_an_equal_slice_of_a_set_no_larger_than_one_batch() -> None:
    labels = torch.arange(15)
    images = torch.randint(0, 256, (15, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    in_memory = TensorImageDataset(images, labels, to_float_transform(), in_memory=True)
    for dataset in (TensorDataset(images.float(), labels), in_memory):  # a DataLoader, an InMemoryLoader

        def epoch(rank: int, world: int, dataset: Any = dataset) -> list[list[int]]:
            loader = make_loader(dataset, 16, train=True, workers=0, device=CPU,
                                 generator=torch.Generator().manual_seed(5), dist=DistContext(rank, world))  # fmt: skip
            return [target.tolist() for _, target in loader]

        (whole,) = epoch(0, 1)
        assert sorted(whole) == list(range(15))  # one process: one step of all 15
        first, second = epoch(0, 2), epoch(1, 2)
        assert len(first) == len(second) == 1
        assert first[0] + second[0] == whole[:14]  # two: one step each, 7 + 7 of the same permutation


def test_dataloader_workers_of_rank_r_are_seeded_r_large_primes_apart() -> None:
    torch.manual_seed(1234)
    random.seed(99)
    RankSeed(DistContext(0, 3))(0)  # rank 0: both streams untouched
    assert (torch.initial_seed(), random.random()) == (1234, random.Random(99).random())
    RankSeed(DistContext(2, 3))(1)
    assert torch.initial_seed() == 1234 + 2 * 1_000_003
    assert random.random() == random.Random(1234 + 2 * 1_000_003).random()


def test_loaders_pin_their_batches_for_a_cuda_device_only() -> None:
    """Pinned batches let the trainer's ``non_blocking`` copies overlap the GPU's work: the DataLoader and the
    in-memory loader both pin for CUDA (checked as configured: no GPU is touched here), neither for the CPU."""
    images, labels = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    in_memory = TensorImageDataset(images, labels, to_float_transform(), in_memory=True)
    per_image = TensorImageDataset(images, labels, to_float_transform())
    for dataset in (in_memory, per_image):
        for device, pinned in ((torch.device("cuda"), True), (CPU, False)):
            for train in (True, False):
                assert make_loader(dataset, 2, train=train, workers=0, device=device).pin_memory is pinned
