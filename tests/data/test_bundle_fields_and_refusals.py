"""What the dataset readers build, value by value: every field of each format's bundle (transforms compared by
their repr), the in-memory flags and batch augmentation, the defaults, each refusal on its own, and the exact
messages. Tiny data in the real on-disk formats (conftest.py); CIFAR-10 also as the Python 2 pickle it ships as."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from visionlab.data import DatasetError, ImageListDataset, TensorImageDataset, load_dataset, parse_spec, read_idx
from visionlab.data.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    read_cifar10,
)
from visionlab.data.memory import BatchAugment
from visionlab.data.transforms import eval_transform, to_float_transform, train_transform

from .conftest import CIFAR10_NAMES, CifarSet, IdxSet, insert_line, save_image, write_cifar_batch


def message_of(call) -> str:
    with pytest.raises(DatasetError) as info:
        call()
    return str(info.value)


def same_transform(actual: object, expected: object) -> bool:
    return repr(actual) == repr(expected)


# --------------------------------------------------------------------------------------------- bundles
def test_fashion_mnist_bundle_field_by_field(fashion_mnist: IdxSet) -> None:
    bundle = load_dataset(f"fashion-mnist:{fashion_mnist.root}")
    assert (bundle.kind, bundle.root, bundle.recipe) == ("fashion-mnist", str(fashion_mnist.root), "small")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (10, 1, 28)
    assert (bundle.mean, bundle.std) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD) == ((0.2860,), (0.3530,))
    assert bundle.class_names == list(FASHION_MNIST_CLASSES) and bundle.test is None and bundle.extra == {}
    train, val = bundle.train, bundle.val
    assert isinstance(train, TensorImageDataset) and isinstance(val, TensorImageDataset)
    assert (train.in_memory, train.batch_augment) == (True, BatchAugment(flip=True, pad=0, erase=0.0))
    assert (val.in_memory, val.batch_augment) == (True, None)
    assert same_transform(train.transform, train_transform("flip", 28))
    assert same_transform(val.transform, to_float_transform())
    assert torch.equal(train.images[:, 0], torch.from_numpy(fashion_mnist.train_x))
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [0, 9, 3, 3, 1, 5]


def test_cifar10_bundle_field_by_field(cifar10: CifarSet) -> None:
    bundle = load_dataset(f"cifar10:{cifar10.root}")
    assert (bundle.kind, bundle.root, bundle.recipe) == ("cifar10", str(cifar10.root / "cifar-10-batches-py"), "small")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (10, 3, 32)
    assert (bundle.mean, bundle.std) == (CIFAR10_MEAN, CIFAR10_STD)
    assert (CIFAR10_MEAN, CIFAR10_STD) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert bundle.class_names == list(CIFAR10_NAMES) and bundle.test is None and bundle.extra == {}
    train, val = bundle.train, bundle.val
    assert (train.in_memory, train.batch_augment) == (True, BatchAugment(flip=True, pad=2, erase=0.0))
    assert (val.in_memory, val.batch_augment) == (True, None)
    assert same_transform(train.transform, train_transform("small", 32))
    assert "padding=[2, 2, 2, 2]" in repr(train.transform)
    assert same_transform(val.transform, to_float_transform())


def test_image_folder_bundle_field_by_field(image_folder: Path) -> None:
    bundle = load_dataset(f"folder:{image_folder}")  # the default size: 128
    assert (bundle.kind, bundle.root, bundle.recipe) == ("folder", str(image_folder), "miniplaces")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (2, 3, 128)
    assert (bundle.mean, bundle.std) == (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert bundle.class_names == ["cat", "dog"] and bundle.test is None and bundle.extra == {}
    assert isinstance(bundle.train, ImageListDataset) and isinstance(bundle.val, ImageListDataset)
    assert same_transform(bundle.train.transform, train_transform("miniplaces", 128))
    assert same_transform(bundle.val.transform, eval_transform("miniplaces", 128))
    assert bundle.val[0][0].shape == (3, 128, 128)
    assert bundle.train.cache is None and bundle.val.cache is None
    cached = load_dataset(f"folder:{image_folder}", image_size=16, cache=True)
    assert cached.train.cache is not None and cached.val.cache is not None
    assert cached.val.cache.data.shape == (2, 3, 16, 16)


def test_miniplaces_bundle_field_by_field(miniplaces: Path) -> None:
    bundle = load_dataset(f"miniplaces:{miniplaces}", image_size=48)
    assert (bundle.kind, bundle.root, bundle.recipe) == ("miniplaces", str(miniplaces), "miniplaces")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (100, 3, 48)
    assert (bundle.mean, bundle.std) == (IMAGENET_MEAN, IMAGENET_STD) and bundle.extra == {}
    assert same_transform(bundle.train.transform, train_transform("miniplaces", 48))
    assert same_transform(bundle.val.transform, eval_transform("miniplaces", 48))
    assert bundle.test is None and bundle.train.cache is None and bundle.val.cache is None


# --------------------------------------------------------------------------------------------- TensorImageDataset
def test_tensor_image_dataset_defaults_and_each_refusal() -> None:
    images, labels = torch.zeros(2, 1, 4, 3, dtype=torch.uint8), torch.tensor([1, 0], dtype=torch.uint8)
    dataset = TensorImageDataset(images, labels, to_float_transform())
    assert (dataset.in_memory, dataset.batch_augment) == (False, None)
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == [1, 0]
    refused = {
        "three dimensions": (torch.zeros(2, 4, 3, dtype=torch.uint8), labels, (2, 4, 3)),
        "float pixels": (torch.zeros(2, 1, 4, 3), labels, (2, 1, 4, 3)),
        "one label short": (images, labels[:1], (2, 1, 4, 3)),
    }
    for why, (bad_images, bad_labels, shape) in refused.items():
        with pytest.raises(ValueError) as info:
            TensorImageDataset(bad_images, bad_labels, to_float_transform())
        assert str(info.value) == f"expected uint8 (N, C, H, W) images and N labels, got {shape}", why


def test_image_list_dataset_cache_threads_default(monkeypatch: pytest.MonkeyPatch, miniplaces: Path) -> None:
    entries = load_dataset(str(miniplaces)).val.entries
    transform = eval_transform("miniplaces", 16)
    for cpus, threads in ((12, 8), (8, 8), (3, 3), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert ImageListDataset(entries, transform).cache_workers == threads, cpus
    assert ImageListDataset(entries, transform, cache_workers=5).cache_workers == 5


# --------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("magic", [b"\x00\x01", b"\x01\x00"])
def test_idx_magic_needs_both_leading_zero_bytes(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(magic + b"\x08\x01\x00\x00\x00\x01\x07")
    assert message_of(lambda: read_idx(path)) == f"{path}: not an IDX file (bad magic number)"


def test_idx_of_zero_dimensions_is_one_byte(tmp_path: Path) -> None:
    """A 4-byte header with no dimensions describes a scalar: one byte of data (np.prod(()) == 1)."""
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00\x08\x00")
    assert message_of(lambda: read_idx(path)) == f"{path}: IDX header says shape () (1 bytes) but holds 0"
    path.write_bytes(b"\x00\x00\x08\x00\x07")
    scalar = read_idx(path)
    assert scalar.shape == () and scalar.dtype == torch.uint8 and int(scalar) == 7
    path.write_bytes(b"\x00\x00\x08")
    assert message_of(lambda: read_idx(path)) == f"{path}: not an IDX file (bad magic number)"


# --------------------------------------------------------------------------------------------- CIFAR-10
def python2_pickle(batch: dict[str, object]) -> bytes:
    """``batch`` pickled as Python 2's cPickle wrote the CIFAR-10 files: protocol 2, keys as byte strings
    (``SHORT_BINSTRING``), which Python 3 reads back as bytes only with ``encoding="bytes"``."""
    body = b""
    for key, value in batch.items():
        body += b"U" + bytes([len(key)]) + key.encode("ascii") + pickle.dumps(value, protocol=2)[2:-1]
    return b"\x80\x02}(" + body + b"u."


def test_cifar10_batches_pickled_by_python2_are_read(cifar10: CifarSet) -> None:
    folder = cifar10.root / "cifar-10-batches-py"
    for name, (data, labels) in cifar10.batches.items():
        (folder / name).write_bytes(python2_pickle({"batch_label": "x", "data": data, "labels": labels}))
    meta = {"label_names": [n.encode() for n in CIFAR10_NAMES], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(python2_pickle(meta))
    (x, y), (tx, ty), names = read_cifar10(folder)
    assert names == list(CIFAR10_NAMES) and x.shape == (10, 3, 32, 32)
    assert torch.equal(tx, torch.from_numpy(cifar10.batches["test_batch"][0].reshape(2, 3, 32, 32)))
    assert y.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and ty.tolist() == [5, 4]


def test_cifar10_any_integer_storage_gives_uint8_pixels_and_int64_labels(cifar10: CifarSet) -> None:
    folder = cifar10.root / "cifar-10-batches-py"
    data, _ = cifar10.batches["test_batch"]
    write_cifar_batch(folder / "test_batch", data.astype(np.int64), np.array([3, 4], dtype=np.uint8))
    _, (x, y), _ = read_cifar10(folder)
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(data.reshape(2, 3, 32, 32))) and y.tolist() == [3, 4]


@pytest.mark.parametrize("keep", ["data", "labels"])
def test_cifar10_batch_with_one_key_missing_is_named(cifar10: CifarSet, keep: str) -> None:
    path = cifar10.root / "cifar-10-batches-py/data_batch_2"
    data, labels = cifar10.batches["data_batch_2"]
    path.write_bytes(pickle.dumps({b"data": data} if keep == "data" else {b"labels": labels}))
    assert message_of(lambda: read_cifar10(path.parent)) == (
        f"{path}: expected b'data' (N, 3072) uint8 and N b'labels'"
    )


# --------------------------------------------------------------------------------------------- categories
def test_categories_names_by_form_and_a_blank_line_inside(miniplaces: Path) -> None:
    (miniplaces / "categories.txt").write_text(
        "/a/abbey 0\n\n/a/apartment_building/outdoor 1\nbakery 2\n/canyon 3\nc/cliff 4\n/b/BOX 5\n"
    )
    names = load_dataset(str(miniplaces)).class_names
    assert names[:7] == ["abbey", "apartment_building/outdoor", "bakery", "canyon", "cliff", "BOX", "6"]


@pytest.mark.parametrize(
    ("line", "message"),
    [("/z/zoo -1", "label -1 outside [0, 100)"), ("/x/xray X5", "expected '/a/abbey 0', got '/x/xray X5'")],
)
def test_categories_label_sign_and_letters(miniplaces: Path, line: str, message: str) -> None:
    insert_line(miniplaces / "categories.txt", 1, line)
    assert message_of(lambda: load_dataset(str(miniplaces))) == f"{miniplaces / 'categories.txt'}:1: {message}"


# --------------------------------------------------------------------------------------------- list files
@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("\\images\\x.jpg", "absolute path '\\\\images\\\\x.jpg' not allowed (paths are relative to {images})"),
        ("C:", "absolute path 'C:' not allowed (paths are relative to {images})"),
        ("x", "image {images}/x does not exist"),  # one character: no drive letter to look at
    ],
)
def test_list_path_forms(miniplaces: Path, rel: str, problem: str) -> None:
    insert_line(miniplaces / "train.txt", 2, f"{rel} 0")
    expected = f"{miniplaces / 'train.txt'}:2: " + problem.format(images=miniplaces / "images")
    assert message_of(lambda: load_dataset(str(miniplaces))) == expected


def test_unlabeled_list_takes_an_optional_label_column(miniplaces: Path) -> None:
    save_image(miniplaces / "images/test/00000001.jpg", seed=3)
    (miniplaces / "test.txt").write_text("test/00000001.jpg 5\n")  # the label is ignored: -1
    bundle = load_dataset(str(miniplaces))
    assert bundle.test is not None and [(e.label, e.source) for e in bundle.test.entries] == [
        (-1, f"{miniplaces / 'test.txt'}:1")
    ]
    assert same_transform(bundle.test.transform, eval_transform("miniplaces", 128))
    (miniplaces / "test.txt").write_text("test/00000001.jpg 5 extra\n")
    assert message_of(lambda: load_dataset(str(miniplaces))) == (
        f"{miniplaces / 'test.txt'}:1: expected 'relative/path.jpg', got 'test/00000001.jpg 5 extra'"
    )


# --------------------------------------------------------------------------------------------- parse_spec
def test_unrecognised_layout_message_in_full(tmp_path: Path) -> None:
    assert message_of(lambda: parse_spec(str(tmp_path))) == (
        f"{tmp_path}: cannot tell the dataset format (expected train.txt + val.txt [MiniPlaces], train/ + val/ "
        "class folders [ImageFolder], CIFAR-10 python batches, or Fashion-MNIST IDX files)"
    )


@pytest.mark.parametrize("kind", ["folder", "miniplaces", "cifar10", "fashion-mnist"])
def test_a_prefixed_spec_whose_folder_does_not_exist_says_so(tmp_path: Path, kind: str) -> None:
    """Not the first file the reader looks for inside it (``PATH/train: missing``), but the folder itself."""
    missing, afile = tmp_path / "nonexistent", tmp_path / "a-file"
    afile.write_text("")
    spec = f"{kind}:{missing}"
    assert message_of(lambda: load_dataset(spec)) == f"dataset {spec!r}: {missing}: no such directory"
    spec = f"{kind}:{afile}"
    assert message_of(lambda: load_dataset(spec)) == f"dataset {spec!r}: {afile}: not a directory"
