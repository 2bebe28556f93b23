"""The in-memory batch path: augmentation values, epoch coverage, determinism, and the loader's dispatch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from visionlab.data import BatchAugment, InMemoryLoader, TensorImageDataset
from visionlab.data.transforms import to_float_transform
from visionlab.engine.trainer import make_loader


def _images(n: int = 10, c: int = 1, h: int = 5, w: int = 4) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, c, h, w)


def _dataset(n: int = 10, augment: BatchAugment | None = None, in_memory: bool = True) -> TensorImageDataset:
    return TensorImageDataset(
        _images(n), torch.arange(n) % 3, to_float_transform(), in_memory=in_memory, batch_augment=augment
    )


def test_flip_mirrors_exactly_the_images_its_draw_selects() -> None:
    x = _images(64)
    out = BatchAugment(flip=True)(x, torch.Generator().manual_seed(0))
    mirror = torch.rand(64, generator=torch.Generator().manual_seed(0)) < 0.5  # the same draw
    assert 10 < int(mirror.sum()) < 54
    for i in range(64):
        assert torch.equal(out[i], x[i].flip(-1) if mirror[i] else x[i])


def test_padded_crop_equals_cropping_each_zero_padded_image_by_hand() -> None:
    x = _images(16, c=2)
    out = BatchAugment(flip=False, pad=2)(x, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    dy, dx = torch.randint(0, 5, (16,), generator=gen), torch.randint(0, 5, (16,), generator=gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        y0, x0 = int(dy[i]), int(dx[i])
        assert torch.equal(out[i], padded[i, :, y0 : y0 + 5, x0 : x0 + 4])
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert {int(v) for v in dy} | {int(v) for v in dx} == {0, 1, 2, 3, 4}  # every offset, zero rows included


def test_an_epoch_serves_every_image_once_and_drops_only_the_ragged_batch() -> None:
    ds = _dataset(10, BatchAugment(flip=False))
    loader = InMemoryLoader(ds, 4, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 2
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4]
    seen = torch.cat([x for x, _ in batches])
    firsts = {int(v) for v in (seen[:, 0, 0, 0] * 255).round().long()}
    assert len(firsts) == 8  # 8 distinct images, none twice
    full = InMemoryLoader(ds, 4, shuffle=True, drop_last=False, generator=torch.Generator().manual_seed(0))
    assert len(full) == 3 and sum(len(y) for _, y in full) == 10


def test_evaluation_batches_are_the_per_image_transform_in_order_bit_for_bit() -> None:
    ds = _dataset(7, BatchAugment(flip=True, pad=1))  # never applied without shuffle
    x, y = next(iter(InMemoryLoader(ds, 7, shuffle=False, drop_last=False)))
    expected = torch.stack([ds[i][0] for i in range(7)])
    assert torch.equal(x, expected) and x.dtype == torch.float32
    assert torch.equal(y, torch.arange(7) % 3)


def test_the_same_generator_state_gives_the_same_batches() -> None:
    ds = _dataset(12, BatchAugment(flip=True, pad=1))
    gen = torch.Generator().manual_seed(5)
    first = list(InMemoryLoader(ds, 5, shuffle=True, drop_last=True, generator=gen))
    state = gen.get_state()
    second = list(InMemoryLoader(ds, 5, shuffle=True, drop_last=True, generator=gen))
    gen.set_state(state)
    replay = list(InMemoryLoader(ds, 5, shuffle=True, drop_last=True, generator=gen))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(second, replay, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))  # epochs differ


def test_make_loader_serves_in_memory_datasets_and_their_subsets_in_batches() -> None:
    cpu = torch.device("cpu")
    ds = _dataset(10)
    loader = make_loader(Subset(ds, range(6)), 4, train=False, workers=2, device=cpu)
    assert isinstance(loader, InMemoryLoader) and len(loader.dataset) == 6
    assert torch.equal(torch.cat([y for _, y in loader]), torch.arange(6) % 3)
    per_image = make_loader(_dataset(10, in_memory=False), 4, train=False, workers=0, device=cpu)
    assert isinstance(per_image, DataLoader)


def test_a_replaced_transform_turns_the_batch_path_off() -> None:
    ds = _dataset(4, BatchAugment(flip=True))
    ds.transform = lambda image: image.float()  # e.g. eval converting channels: no batch equivalent
    assert not ds.in_memory and ds.batch_augment is None
    assert isinstance(make_loader(ds, 2, train=False, workers=0, device=torch.device("cpu")), DataLoader)


def test_a_training_epoch_is_the_generators_permutation_then_its_augmentation() -> None:
    ds = _dataset(12, BatchAugment(flip=True, pad=1))
    loader = InMemoryLoader(ds, 12, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(3))
    ((x, y),) = list(loader)
    replay = torch.Generator().manual_seed(3)
    order = torch.randperm(12, generator=replay)
    assert not torch.equal(order, torch.arange(12))  # a real shuffle
    expected = BatchAugment(flip=True, pad=1)(ds.images[order], replay).to(torch.float32).mul_(1.0 / 255)
    assert torch.equal(x, expected) and torch.equal(y, ds.labels[order])
    assert not torch.equal(x, ds.images[order].float() / 255)  # augmented, not the plain images


def test_a_one_pixel_pad_crops_too() -> None:
    x = _images(32)
    out = BatchAugment(flip=False, pad=1)(x, torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(2)
    dy, dx = torch.randint(0, 3, (32,), generator=gen), torch.randint(0, 3, (32,), generator=gen)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(32):
        assert torch.equal(out[i], padded[i, :, int(dy[i]) : int(dy[i]) + 5, int(dx[i]) : int(dx[i]) + 4])
    assert not torch.equal(out, x)


def test_a_per_image_dataset_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^TensorImageDataset is not an in-memory dataset"):
        InMemoryLoader(_dataset(4, in_memory=False), 2, shuffle=False, drop_last=False)


def test_without_a_generator_the_batches_are_still_reproducible() -> None:
    ds = _dataset(16, BatchAugment(flip=True))
    torch.manual_seed(123)  # the global RNG plays no part
    a = list(InMemoryLoader(ds, 8, shuffle=True, drop_last=True))
    torch.manual_seed(456)
    b = list(InMemoryLoader(ds, 8, shuffle=True, drop_last=True))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
