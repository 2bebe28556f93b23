"""File datasets with ``cache=True``: the same items as decoding each time (the evaluation recipe exactly, the
training recipe with the same random draws), through a DataLoader worker and across a resume too, and the same
error naming the list line for a corrupt file. Tiny data in the real on-disk formats (conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.data import ImageListDataset, load_dataset
from visionlab.data.transforms import eval_transform
from visionlab.engine import make_loader

from .conftest import IdxSet, damage, error_of, save_image


def spec(kind: str, miniplaces: Path, image_folder: Path) -> str:
    return f"miniplaces:{miniplaces}" if kind == "miniplaces" else f"folder:{image_folder}"


@pytest.fixture(params=["miniplaces", "folder"])
def data_spec(request: pytest.FixtureRequest, miniplaces: Path, image_folder: Path) -> str:
    return spec(request.param, miniplaces, image_folder)


def assert_same_items(a: ImageListDataset, b: ImageListDataset, seed: int) -> None:
    for i in range(len(a)):
        torch.manual_seed(seed + i)
        x, y = a[i]
        torch.manual_seed(seed + i)
        x2, y2 = b[i]
        assert y == y2 and type(x) is type(x2) and torch.equal(x, x2), f"item {i}"


# --------------------------------------------------------------------------------------------- cache
def test_cache_gives_the_same_items(data_spec: str) -> None:
    plain, cached = load_dataset(data_spec), load_dataset(data_spec, cache=True)
    assert plain.train.cache is None and cached.train.cache is not None
    assert_same_items(plain.val, cached.val, seed=0)  # deterministic: equal whatever the seed
    for seed in (0, 100):
        assert_same_items(plain.train, cached.train, seed)  # the same augmentation drawn


def test_cache_holds_uint8_after_the_deterministic_head(miniplaces: Path) -> None:
    bundle = load_dataset(str(miniplaces), image_size=32, cache=True)
    val, train = bundle.val.cache, bundle.train.cache
    assert val is not None and train is not None
    # val: resized and centre-cropped before caching, one (N, 3, 32, 32) tensor
    assert val.data.dtype == torch.uint8 and val.data.shape == (3, 3, 32, 32) and val.nbytes == 3 * 3 * 32 * 32
    # train: the decoded 20x16 fixture images (the training resize draws its kernel at random, so it runs later)
    assert train.data.shape == (6, 3, 16, 20)


def test_test_split_is_not_cached(miniplaces: Path) -> None:
    save_image(miniplaces / "images/test/00000001.jpg", seed=7)
    bundle = load_dataset(str(miniplaces), cache=True)
    assert bundle.test is not None and bundle.test.cache is None and bundle.val.cache is not None


def test_formats_held_in_memory_accept_the_keyword(fashion_mnist: IdxSet) -> None:
    bundle = load_dataset(str(fashion_mnist.root), cache=True)
    assert bundle.kind == "fashion-mnist" and len(bundle.train) == 6


def test_new_transform_rebuilds_the_cache(miniplaces: Path) -> None:
    """What ``visionlab eval`` does for a checkpoint of another size or channel count."""
    plain, cached = load_dataset(str(miniplaces)), load_dataset(str(miniplaces), cache=True)
    for bundle in (plain, cached):
        bundle.val.transform = eval_transform("miniplaces", 24, 1)
    assert cached.val.cache is not None and cached.val.cache.data.shape == (3, 1, 24, 24)
    assert_same_items(plain.val, cached.val, seed=0)


def test_any_callable_transform_gets_what_it_got_without_the_cache(miniplaces: Path) -> None:
    """Not a v2.Compose: nothing runs before caching, and the transform still receives a plain uint8 tensor."""
    plain, cached = load_dataset(str(miniplaces)), load_dataset(str(miniplaces), cache=True)
    for bundle in (plain, cached):
        bundle.train.transform = lambda image: image
    assert type(cached.train[0][0]) is torch.Tensor and cached.train[0][0].dtype == torch.uint8
    assert_same_items(plain.train, cached.train, seed=0)


def test_cached_batches_through_a_dataloader_worker_are_the_same_and_resume_exactly(miniplaces: Path) -> None:
    """The trainer's loader: one worker (forked after the cache is built), seeded every epoch from the generator.
    Two epochs give the same batches with and without the cache, and a loader whose generator is restored to the
    state after epoch 1 (what a checkpoint stores) gives epoch 2 again."""

    def loader(dataset: ImageListDataset, generator: torch.Generator) -> torch.utils.data.DataLoader:
        return make_loader(dataset, 4, train=True, workers=1, device=torch.device("cpu"), generator=generator)

    runs, resumed = [], None
    for cache in (False, True):
        train = load_dataset(str(miniplaces), cache=cache).train
        generator = torch.Generator().manual_seed(5)
        epoch1 = list(loader(train, generator))
        state = generator.get_state()
        epoch2 = list(loader(train, generator))
        runs.append(epoch1 + epoch2)
        if cache:
            resumed = list(loader(train, torch.Generator().set_state(state)))
    for (plain_x, plain_y), (cached_x, cached_y) in zip(*runs, strict=True):
        assert torch.equal(plain_y, cached_y) and torch.equal(plain_x, cached_x)
    assert resumed is not None and len(resumed) == len(epoch2)
    for (x, y), (x2, y2) in zip(resumed, epoch2, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(epoch1[0][0], epoch2[0][0])  # the epochs do differ


@pytest.mark.parametrize("how", ["garbage", "truncated_data"])
def test_corrupt_image_while_caching_names_the_list_line(miniplaces: Path, how: str) -> None:
    image = miniplaces / "images/train/b/bakery/00000002.jpg"  # train.txt line 4
    damage(image, how)
    error_of(
        lambda: load_dataset(str(miniplaces), check_images=False, cache=True),
        f"{miniplaces / 'train.txt'}:4: cannot decode image {image}",
    )


def test_train_cache_images_flag_reaches_the_datasets(miniplaces: Path, tmp_path: Path) -> None:
    from visionlab.cli import build_parser, train_config_from_args
    from visionlab.engine import Trainer

    argv = ["train", "--data", f"miniplaces:{miniplaces}", "--image-size", "16", "--epochs", "1", "-b", "4",
            "--cache-images", "-j", "0", "--device", "cpu", "--out", str(tmp_path / "run"), "-q"]  # fmt: skip
    cfg, _ = train_config_from_args(build_parser().parse_args(argv))
    assert cfg.cache_images
    trainer = Trainer(cfg, callbacks=[])
    assert trainer.bundle.train.cache is not None and trainer.bundle.val.cache is not None
    assert trainer.fit()["epoch"] == 0
    cfg.cache_images, cfg.out = False, str(tmp_path / "uncached")
    assert Trainer(cfg, callbacks=[]).bundle.train.cache is None
