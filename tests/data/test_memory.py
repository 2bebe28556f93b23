"""The in-memory batch path: augmentation values, epoch coverage, determinism, and the loader's dispatch."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from visionlab.data import BatchAugment, InMemoryLoader, TensorImageDataset
from visionlab.data.transforms import to_float_transform
from visionlab.engine import make_loader

from ..statistical import Statistic


def _images(n: int = 10, c: int = 1, h: int = 5, w: int = 4) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, c, h, w)


def _dataset(n: int = 10, augment: BatchAugment | None = None, in_memory: bool = True) -> TensorImageDataset:
    return TensorImageDataset(
        _images(n), torch.arange(n) % 3, to_float_transform(), in_memory=in_memory, batch_augment=augment
    )


@pytest.mark.statistical(seed=0)
def test_flip_mirrors_exactly_the_images_its_draw_selects(stat_seed: int, stat: Statistic) -> None:
    x = _images(64)
    out = BatchAugment(flip=True)(x, torch.Generator().manual_seed(stat_seed))
    mirror = torch.rand(64, generator=torch.Generator().manual_seed(stat_seed)) < 0.5  # the same draw
    stat.check("images mirrored of 64", mirror.sum(), ">", 10)  # both kinds occur, many times
    stat.check("images mirrored of 64", mirror.sum(), "<", 54)
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


def test_parse_augment_spec() -> None:
    from visionlab.data.memory import parse_augment

    assert parse_augment("flip,crop=2,erase=0.5") == BatchAugment(flip=True, pad=2, erase=0.5)
    assert parse_augment("crop=4") == BatchAugment(flip=False, pad=4, erase=0.0)
    assert parse_augment("none") == BatchAugment(flip=False, pad=0, erase=0.0)
    for bad in ("flip,rotate=3", "crop=0", "erase=0", "erase=1.5", "flip=1", "crop", "none,flip"):
        with pytest.raises(ValueError, match="expected 'none' or comma-separated"):
            parse_augment(bad)


def test_erasing_blanks_one_box_per_chosen_image_of_the_drawn_size() -> None:
    images = torch.full((64, 2, 20, 30), 200, dtype=torch.uint8)
    out = BatchAugment(flip=False, erase=1.0)(images, torch.Generator().manual_seed(0))
    for image in out:
        assert torch.equal(image[0], image[1])  # the same box in every channel
        zero = image[0] == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert zero.sum() == box  # one rectangle
        assert 1 <= box <= 600 and box >= 0.02 * 600 * 0.5  # 2-33% of the area, minus rounding and clipping
    assert (out == 0).float().mean().item() == pytest.approx(0.175, abs=0.04)  # mean of U(0.02, 0.33)
    half = BatchAugment(flip=False, erase=0.5)(images, torch.Generator().manual_seed(1))
    erased = (half == 0).flatten(1).any(1)
    assert 16 < int(erased.sum()) < 48  # about half the images
    again = BatchAugment(flip=False, erase=0.5)(images, torch.Generator().manual_seed(1))
    assert torch.equal(half, again)  # drawn from the generator only


def test_trainer_augment_replaces_the_batch_augmentation_of_a_copy(tmp_path, fashion_mnist, miniplaces) -> None:
    from visionlab.engine import TrainConfig, Trainer
    from visionlab.errors import ConfigError

    cfg = TrainConfig(data=f"fashion-mnist:{fashion_mnist.root}", augment="flip,crop=2,erase=0.25", epochs=1,
                      batch_size=8, device="cpu", out=str(tmp_path / "r"), tensorboard=False, quiet=True)  # fmt: skip
    trainer = Trainer(cfg, callbacks=[])
    assert trainer.train_loader.augment == BatchAugment(flip=True, pad=2, erase=0.25)
    assert trainer.bundle.train.batch_augment == BatchAugment(flip=True)  # the loaded dataset is untouched
    cfg = TrainConfig(data=f"miniplaces:{miniplaces}", augment="flip", epochs=1, batch_size=2, image_size=16,
                      device="cpu", out=str(tmp_path / "m"), tensorboard=False, quiet=True, workers=0)  # fmt: skip
    with pytest.raises(ConfigError, match="applies to datasets held in memory") as info:
        Trainer(cfg, callbacks=[])
    assert info.value.field == "augment"


@pytest.mark.parametrize(("b", "h", "w", "p"), [(32, 9, 13, 0.7), (64, 3, 4, 1.0)])
def test_erasing_boxes_follow_the_stated_distribution_exactly(b: int, h: int, w: int, p: float) -> None:
    """The boxes, recomputed from the same generator by the docstring's rule: area U(0.02, 0.33) of H*W, aspect
    exp(U(log 0.3, log 3.3)), sides rounded and clipped to [1, side], corner uniform over the positions that fit,
    each image chosen with probability p. On 3x4 images some sides round to 0: the lower clip is exercised."""
    images = torch.full((b, 1, h, w), 9, dtype=torch.uint8)
    out = BatchAugment(flip=False, erase=p)(images, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    area = torch.empty(b).uniform_(0.02, 0.33, generator=g) * (h * w)
    aspect = torch.empty(b).uniform_(math.log(0.3), math.log(3.3), generator=g).exp()
    heights = [min(h, max(1, round(math.sqrt(a * r)))) for a, r in zip(area.tolist(), aspect.tolist(), strict=True)]
    widths = [min(w, max(1, round(math.sqrt(a / r)))) for a, r in zip(area.tolist(), aspect.tolist(), strict=True)]
    tops, lefts = torch.rand(b, generator=g).tolist(), torch.rand(b, generator=g).tolist()
    chosen = (torch.rand(b, generator=g) < p).tolist()
    assert any(eh == h for eh in heights) or any(ew == w for ew in widths)  # the clipping is exercised
    if h * w < 20:
        raw = [round(math.sqrt(a / r)) for a, r in zip(area.tolist(), aspect.tolist(), strict=True)]
        raw += [round(math.sqrt(a * r)) for a, r in zip(area.tolist(), aspect.tolist(), strict=True)]
        assert 0 in raw  # a side rounding to 0 is clipped to 1
    for i in range(b):
        expected = torch.full((h, w), 9, dtype=torch.uint8)
        if chosen[i]:
            top, left = int(tops[i] * (h - heights[i] + 1)), int(lefts[i] * (w - widths[i] + 1))
            expected[top : top + heights[i], left : left + widths[i]] = 0
        assert torch.equal(out[i, 0], expected), i


def test_parse_augment_bounds() -> None:
    from visionlab.data.memory import parse_augment

    assert parse_augment("flip") == BatchAugment(flip=True, pad=0, erase=0.0)
    assert parse_augment("crop=1").pad == 1 and parse_augment("crop=64").pad == 64
    assert parse_augment("erase=1").erase == 1.0
    for bad in ("crop=65", "crop=x", "erase=-0.1"):
        with pytest.raises(ValueError, match=bad.replace("=", "=").split(",")[0]):
            parse_augment(bad)


@pytest.mark.parametrize(
    ("augment", "draws"),
    [
        (BatchAugment(flip=False), []),
        (BatchAugment(flip=True), ["flip"]),
        (BatchAugment(flip=False, pad=1), ["crop"]),
        (BatchAugment(flip=True, pad=2, erase=0.0), ["crop", "flip"]),
        (BatchAugment(flip=False, erase=0.5), ["erase"]),
    ],
)
def test_a_batch_augmentation_draws_exactly_what_it_uses(augment: BatchAugment, draws: list[str]) -> None:
    """The generator advances by the switched-on parts' draws only (crop: 2 integers per image, flip: 1 number,
    erasing: 5 numbers per image), so the data order of the epochs after it does not depend on switched-off parts."""
    b, pad = 6, max(augment.pad, 1)
    gen = torch.Generator().manual_seed(11)
    augment(_images(b), gen)
    ref = torch.Generator().manual_seed(11)
    for draw in draws:
        if draw == "crop":
            torch.randint(0, 2 * pad + 1, (2, b), generator=ref)
        elif draw == "flip":
            torch.rand(b, generator=ref)
        else:
            torch.empty(2 * b).uniform_(generator=ref)
            torch.rand(3 * b, generator=ref)
    assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=ref))


def test_parse_augment_error_names_every_choice_and_its_range() -> None:
    from visionlab.data.memory import parse_augment

    with pytest.raises(ValueError) as info:
        parse_augment("erase=2")
    assert str(info.value) == (
        "'erase=2' in 'erase=2': expected 'none' or comma-separated flip, crop=PAD (1-64 px), erase=P (0 < P <= 1), "
        "noise=P (0 < P <= 1)"
    )


def test_parse_augment_noise() -> None:
    from visionlab.data.memory import parse_augment

    assert parse_augment("flip,crop=2,noise=0.5") == BatchAugment(flip=True, pad=2, noise=0.5)
    assert parse_augment("noise=1").noise == 1.0 and parse_augment("erase=0.5").noise == 0.0
    for bad in ("noise=0", "noise=1.5", "noise", "noise=x", "noise=nan", "noise=-0.5"):
        with pytest.raises(ValueError, match=f"^'{bad}' in '{bad}': expected 'none' or comma-separated"):
            parse_augment(bad)


def test_noise_comes_last_from_the_same_generator_and_noise_0_changes_nothing() -> None:
    """The noise (visionlab.data.noise.noise_augment) corrupts the image the crop, flip and erasing made, drawing
    after them from the same generator; without it a batch and the generator's next draws are as before."""
    from visionlab.data.noise import noise_augment

    x = _images(16, c=3)
    out = BatchAugment(flip=True, pad=1, erase=0.5, noise=0.5)(x, torch.Generator().manual_seed(6))
    gen = torch.Generator().manual_seed(6)
    expected = noise_augment(BatchAugment(flip=True, pad=1, erase=0.5)(x, gen), 0.5, gen)
    assert torch.equal(out, expected) and out.dtype == torch.uint8
    plain, off = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    base = BatchAugment(flip=True, pad=1, erase=0.5)(x, plain)
    assert torch.equal(BatchAugment(flip=True, pad=1, erase=0.5, noise=0.0)(x, off), base)
    assert torch.equal(torch.rand(4, generator=plain), torch.rand(4, generator=off))
    assert not torch.equal(out, base)


@pytest.mark.parametrize("world", [2, 4])
def test_each_shard_is_its_slice_of_the_world_of_one_batch(world: int) -> None:
    """With ``shard=(rank, world)`` every rank draws the whole global batch (order and augmentation) and keeps its
    equal slice: the ranks' batches, concatenated in rank order, are the single-process batches."""
    ds = _dataset(20, BatchAugment(flip=True, pad=1, erase=0.5))

    def batches(shard: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(5)
        return list(InMemoryLoader(ds, 8, shuffle=True, drop_last=True, generator=gen, shard=shard))

    whole = batches((0, 1))
    ranks = [batches((rank, world)) for rank in range(world)]
    assert len(whole) == 2 and all(len(r) == 2 for r in ranks)
    for i, (images, labels) in enumerate(whole):
        assert all(r[i][0].shape[0] == 8 // world for r in ranks)
        assert torch.equal(torch.cat([r[i][0] for r in ranks]), images)
        assert torch.equal(torch.cat([r[i][1] for r in ranks]), labels)


@pytest.mark.parametrize(
    ("batch", "shard", "drop_last"),
    [(8, (2, 2), True), (8, (-1, 2), True), (8, (1, 1), True), (6, (0, 4), True), (8, (0, 2), False)],
)
def test_an_impossible_shard_is_refused(batch: int, shard: tuple[int, int], drop_last: bool) -> None:
    with pytest.raises(ValueError) as info:
        InMemoryLoader(_dataset(20), batch, shuffle=True, drop_last=drop_last, shard=shard)
    assert str(info.value) == (
        f"shard {shard} of a global batch of {batch}: needs 0 <= rank < world_size, a batch divisible by "
        "world_size and drop_last"
    )


def test_a_world_of_one_may_keep_a_ragged_batch() -> None:
    loader = InMemoryLoader(_dataset(10), 4, shuffle=False, drop_last=False, shard=(0, 1))
    assert [len(labels) for _, labels in loader] == [4, 4, 2]


def test_without_a_generator_the_loader_draws_from_one_seeded_0() -> None:
    ds = _dataset(16, BatchAugment(flip=True, pad=1))
    own = list(InMemoryLoader(ds, 8, shuffle=True, drop_last=True))
    seeded = list(InMemoryLoader(ds, 8, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(own, seeded, strict=True))


def test_in_memory_shards_see_exactly_the_single_process_images_and_augmentation() -> None:
    images = torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8)
    data = TensorImageDataset(
        images, torch.arange(20), to_float_transform(), in_memory=True, batch_augment=BatchAugment(flip=True, pad=1)
    )

    def epoch(shard: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(3)
        return list(InMemoryLoader(data, 8, shuffle=True, drop_last=True, generator=gen, shard=shard))

    whole, first, second = epoch((0, 1)), epoch((0, 2)), epoch((1, 2))
    assert len(whole) == len(first) == 2
    for (x, y), (x0, y0), (x1, y1) in zip(whole, first, second, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    with pytest.raises(ValueError, match="divisible"):
        InMemoryLoader(data, 7, shuffle=True, drop_last=True, shard=(0, 2))
