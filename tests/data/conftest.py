"""Tiny datasets written in the exact on-disk formats the readers parse (no network, a few KB each)."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlab.data import DatasetError

# MiniPlaces classes of the fixture: (class folder under images/train, label). Label 7 leaves a gap so the
# class-name table is checked by label, not by order.
MINIPLACES_FIXTURE_CLASSES = (("a/abbey", 0), ("b/bakery", 1), ("c/canyon", 7))
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def save_image(path: Path, seed: int, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> np.ndarray:
    """Write a random ``size`` = (width, height) image; the format follows the suffix (JPEG, PNG, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)
    return pixels


def write_idx(path: Path, array: np.ndarray) -> None:
    """Gzipped IDX: magic 0x0000_08_NN (unsigned bytes, NN dimensions), big-endian u32 dims, then the bytes."""
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def insert_line(list_file: Path, number: int, line: str) -> None:
    """Put ``line`` at 1-based line ``number`` of a list file (LF endings)."""
    lines = list_file.read_text().splitlines()
    list_file.write_text("\n".join([*lines[: number - 1], line, *lines[number - 1 :]]) + "\n")


@pytest.fixture
def miniplaces(tmp_path: Path) -> Path:
    """DATA/images/train/<l>/<class>/0000000k.jpg (2 per class, 20x16 RGB JPEG), DATA/images/val/*.jpg,
    train.txt (LF), val.txt (CRLF with blank lines: entries on lines 1, 2 and 4) and categories.txt."""
    root = tmp_path / "mp"
    train_lines = []
    for cls, label in MINIPLACES_FIXTURE_CLASSES:
        for k in (1, 2):
            rel = f"train/{cls}/{k:08d}.jpg"
            save_image(root / "images" / rel, seed=10 * label + k)
            train_lines.append(f"{rel} {label}")
    for k in (1, 2, 3):
        save_image(root / "images" / f"val/{k:08d}.jpg", seed=100 + k)
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    val = "val/00000001.jpg 7\r\nval/00000002.jpg 0\r\n\r\nval/00000003.jpg 1\r\n\r\n"
    (root / "val.txt").write_bytes(val.encode())
    (root / "categories.txt").write_text("".join(f"/{cls} {label}\n" for cls, label in MINIPLACES_FIXTURE_CLASSES))
    return root


@dataclass
class IdxSet:
    root: Path
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@pytest.fixture
def fashion_mnist(tmp_path: Path) -> IdxSet:
    """The four Fashion-MNIST IDX .gz files with 6 train and 4 test random 28x28 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fm"
    root.mkdir()
    data = IdxSet(
        root,
        rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        np.array([0, 9, 3, 3, 1, 5], dtype=np.uint8),
        rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        np.array([2, 4, 6, 8], dtype=np.uint8),
    )
    write_idx(root / "train-images-idx3-ubyte.gz", data.train_x)
    write_idx(root / "train-labels-idx1-ubyte.gz", data.train_y)
    write_idx(root / "t10k-images-idx3-ubyte.gz", data.test_x)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", data.test_y)
    return data


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": path.name.encode(), b"data": data, b"labels": labels}, f)


@dataclass
class CifarSet:
    root: Path  # the directory holding cifar-10-batches-py/
    batches: dict[str, tuple[np.ndarray, list[int]]]  # file name -> (data (2, 3072) uint8, labels)


@pytest.fixture
def cifar10(tmp_path: Path) -> CifarSet:
    """DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, 2 random images per batch."""
    batch_dir = tmp_path / "c" / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [i, 9 - i]
        write_cifar_batch(batch_dir / name, data, labels)
        batches[name] = (data, labels)
    with open(batch_dir / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}, f)
    return CifarSet(batch_dir.parent, batches)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """ImageFolder tree of 24x20 PNGs: train/{dog: 2, cat: 3} (dog written first), val/{cat: 1, dog: 1}."""
    root = tmp_path / "f"
    seed = 0
    for split, counts in (("train", {"dog": 2, "cat": 3}), ("val", {"dog": 1, "cat": 1})):
        for cls, n in counts.items():
            for k in range(n):
                save_image(root / split / cls / f"{k}.png", seed=seed, size=(24, 20))
                seed += 1
    return root


def error_of(call: Callable[[], object], *fragments: str | Path) -> str:
    """Run ``call``, expect a DatasetError, check its message holds every fragment; return the message."""
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert str(fragment) in message, f"{str(fragment)!r} not in {message!r}"
    return message


def damage(path: Path, how: str) -> None:
    """Overwrite an image file with garbage, nothing, or a copy cut in its header or in its entropy-coded data."""
    data = path.read_bytes()
    damaged = {
        "garbage": b"this is not a JPEG at all" * 4,
        "empty": b"",
        "truncated_header": data[: len(data) // 3],
        "truncated_data": data[:-60],  # header intact, entropy-coded data cut: PIL verify() alone passes it
    }[how]
    path.write_bytes(damaged)
