"""Dataset readers on tiny fixtures in the exact on-disk formats, and every bad-input case."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.data import DatasetError, load_dataset, parse_spec, read_cifar10, read_idx
from visionlab.data.transforms import RandomChannelScale, eval_transform, inscribed_rect, train_transform

from ..conftest import make_fashion_mnist, write_idx


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def make_miniplaces(root: Path, categories: bool = True) -> Path:
    """The original layout: images/train/<l>/<class>/*.jpg, images/val/*.jpg, train.txt, val.txt."""
    classes = ["a/abbey", "b/bakery", "c/canyon"]
    train_lines, val_lines = [], []
    for label, cls in enumerate(classes):
        for i in range(2):
            rel = f"train/{cls}/{i + 1:08d}.jpg"
            _jpeg(root / "images" / rel, 10 * label + i)
            train_lines.append(f"{rel} {label}")
        rel = f"val/{label + 1:08d}.jpg"
        _jpeg(root / "images" / rel, 100 + label)
        val_lines.append(f"{rel} {label}")
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    (root / "val.txt").write_bytes(("\r\n".join(val_lines) + "\r\n\r\n").encode())  # CRLF + blank line
    if categories:
        (root / "categories.txt").write_text("".join(f"/{c} {i}\n" for i, c in enumerate(classes)))
    return root


def test_miniplaces_reader(tmp_path: Path) -> None:
    root = make_miniplaces(tmp_path / "mp")
    bundle = load_dataset(f"miniplaces:{root}")
    assert (len(bundle.train), len(bundle.val), bundle.num_classes, bundle.in_channels) == (6, 3, 100, 3)
    assert bundle.class_names[:3] == ["abbey", "bakery", "canyon"] and bundle.class_names[3] == "3"
    assert [bundle.train.entries[i].label for i in range(6)] == [0, 0, 1, 1, 2, 2]
    x, y = bundle.train[2]
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and y == 1
    v1, _ = bundle.val[1]
    assert torch.equal(v1, bundle.val[1][0])  # evaluation is deterministic
    assert bundle.val.entries[1].source == f"{root / 'val.txt'}:2"
    assert load_dataset(str(root)).kind == "miniplaces"  # bare path auto-detected


def test_miniplaces_class_names_from_folders_and_test_split(tmp_path: Path) -> None:
    root = make_miniplaces(tmp_path / "mp", categories=False)
    _jpeg(root / "images" / "test" / "00000001.jpg", 7)
    bundle = load_dataset(f"miniplaces:{root}")
    assert bundle.class_names[:3] == ["abbey", "bakery", "canyon"]
    assert bundle.test is not None and len(bundle.test) == 1 and bundle.test[0][1] == -1
    (root / "test.txt").write_text("test/00000001.jpg\n")
    assert len(load_dataset(f"miniplaces:{root}").test) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train/a/abbey/00000001.jpg 100", r"train\.txt:3: label 100 outside \[0, 100\)"),
        ("train/a/abbey/00000001.jpg -1", r"train\.txt:3: label -1 outside"),
        ("train/a/abbey/missing.jpg 0", r"train\.txt:3: image .*missing\.jpg does not exist"),
        ("../outside.jpg 0", r"train\.txt:3: path '\.\./outside\.jpg' escapes the image root"),
        ("/etc/passwd 0", r"train\.txt:3: absolute path '/etc/passwd' not allowed"),
        ("train/a/abbey/00000001.jpg 0 extra", r"train\.txt:3: expected 'relative/path\.jpg LABEL'"),
        ("train/a/abbey/00000001.jpg zero", r"train\.txt:3: label 'zero' is not an integer"),
    ],
)
def test_bad_list_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = make_miniplaces(tmp_path / "mp")
    (tmp_path / "outside.jpg").write_bytes(b"")
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"miniplaces:{root}")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_reported_before_training(tmp_path: Path, damage: str) -> None:
    root = make_miniplaces(tmp_path / "mp")
    image = root / "images" / "train" / "b" / "bakery" / "00000002.jpg"
    data = image.read_bytes()
    image.write_bytes(b"not a jpeg at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"train\.txt:4: unreadable or corrupt image .*00000002\.jpg"):
        load_dataset(f"miniplaces:{root}")


def test_decode_failure_during_training_names_the_line(tmp_path: Path) -> None:
    root = make_miniplaces(tmp_path / "mp")
    bundle = load_dataset(f"miniplaces:{root}", check_images=False)
    (root / "images" / "train" / "a" / "abbey" / "00000001.jpg").write_bytes(b"broken")
    with pytest.raises(DatasetError, match=r"train\.txt:1: cannot decode image"):
        bundle.train[0]


def test_empty_and_missing_splits(tmp_path: Path) -> None:
    root = make_miniplaces(tmp_path / "mp")
    (root / "val.txt").write_text("\n\r\n  \n")
    with pytest.raises(DatasetError, match=r"val\.txt: the split is empty"):
        load_dataset(f"miniplaces:{root}")
    (root / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt: list file missing"):
        load_dataset(f"miniplaces:{root}")


def test_idx_round_trip_and_fashion_mnist_directory(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", array)
    assert torch.equal(read_idx(tmp_path / "x.gz"), torch.from_numpy(array))
    root = make_fashion_mnist(tmp_path / "fm", n_train=12, n_test=6)
    bundle = load_dataset(str(root))
    assert (bundle.kind, len(bundle.train), len(bundle.val), bundle.num_classes) == ("fashion-mnist", 12, 6, 10)
    x, y = bundle.val[0]
    expected = read_idx(root / "t10k-images-idx3-ubyte.gz")[0].float() / 255
    assert x.shape == (1, 28, 28) and torch.allclose(x[0], expected) and 0 <= y < 10


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(DatasetError, match=r"bad\.gz: IDX element type 0x0d unsupported"):
        read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DatasetError, match=r"short\.gz: IDX header says shape \(5,\)"):
        read_idx(tmp_path / "short.gz")
    root = make_fashion_mnist(tmp_path / "fm", n_train=12, n_test=6)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(DatasetError, match="train has 12 images but 11 labels"):
        load_dataset(str(root))


def _cifar(root: Path, label_for_last: int = 9) -> np.ndarray:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = [0, 3, 5, label_for_last]
        first = data if first is None else first
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    return first


def test_cifar10_batches(tmp_path: Path) -> None:
    first = _cifar(tmp_path / "c" / "cifar-10-batches-py")
    (x, y), (tx, _), names = read_cifar10(tmp_path / "c" / "cifar-10-batches-py")
    assert x.shape == (20, 3, 32, 32) and tx.shape == (4, 3, 32, 32) and names[9] == "truck"
    c, row, col = 2, 5, 7
    assert x[0, c, row, col] == first[0, c * 1024 + row * 32 + col]
    assert y.tolist()[:4] == [0, 3, 5, 9]
    bundle = load_dataset(str(tmp_path / "c"))
    assert (bundle.kind, bundle.num_classes, bundle.image_size) == ("cifar10", 10, 32)


def test_cifar10_errors(tmp_path: Path) -> None:
    _cifar(tmp_path / "c", label_for_last=10)
    with pytest.raises(DatasetError, match=r"data_batch_1: label outside \[0, 10\)"):
        load_dataset(f"cifar10:{tmp_path / 'c'}")
    (tmp_path / "c" / "data_batch_1").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_1: missing CIFAR-10 batch"):
        read_cifar10(tmp_path / "c")


def test_image_folder(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for i, cls in enumerate(("dog", "cat")):
            _jpeg(tmp_path / "f" / split / cls / f"{i}.jpg", i)
    bundle = load_dataset(f"folder:{tmp_path / 'f'}", image_size=64)
    assert bundle.class_names == ["cat", "dog"] and bundle.num_classes == 2
    assert bundle.train[0][0].shape == (3, 64, 64) and {bundle.train[i][1] for i in range(2)} == {0, 1}
    _jpeg(tmp_path / "f" / "val" / "bird" / "0.jpg", 3)
    with pytest.raises(DatasetError, match=r"class folders \['bird'\] do not exist"):
        load_dataset(f"folder:{tmp_path / 'f'}")


def test_parse_spec(tmp_path: Path) -> None:
    assert parse_spec("fashion-mnist") == ("fashion-mnist", "")
    assert parse_spec("miniplaces:/x") == ("miniplaces", "/x")
    assert parse_spec("folder:/y") == ("folder", "/y")
    assert parse_spec("cifar10:/z") == ("cifar10", "/z")
    with pytest.raises(DatasetError, match="no such directory"):
        parse_spec(str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        parse_spec(str(tmp_path))


def test_inscribed_rect_by_hand() -> None:
    assert inscribed_rect(40, 30, 0.0) == pytest.approx((40, 30))
    side = inscribed_rect(10, 10, np.pi / 4)
    assert side == pytest.approx((10 / np.sqrt(2), 10 / np.sqrt(2)))
    w, h, a = 144.0, 192.0, np.radians(15)
    cw, ch = inscribed_rect(w, h, a)
    # every corner of the crop, rotated back into the image frame, lies inside the image
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * cw / 2, sy * ch / 2
            assert abs(x * np.cos(a) - y * np.sin(a)) <= w / 2 + 1e-6
            assert abs(x * np.sin(a) + y * np.cos(a)) <= h / 2 + 1e-6


def test_transforms_shapes_ranges_and_determinism() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    train = train_transform("miniplaces", 128)
    torch.manual_seed(5)
    a = train(image)
    torch.manual_seed(5)
    assert torch.equal(a, train(image)) and a.shape == (3, 128, 128) and a.min() >= 0 and a.max() <= 1
    from torchvision.transforms.v2 import functional as TF

    expected = TF.center_crop(TF.resize(TF.to_image(image), [144], antialias=True), [128, 128]).float() / 255
    torch.testing.assert_close(eval_transform("miniplaces", 128)(image), expected, atol=1e-6, rtol=0)
    x = torch.full((3, 4, 4), 0.5)
    torch.manual_seed(0)
    y = RandomChannelScale(0.15)(x)
    factors = y[:, 0, 0] / 0.5
    assert ((factors >= 0.85) & (factors <= 1.15)).all() and (y == y[:, :1, :1]).all()
    assert train_transform("small", 32)(torch.zeros(3, 32, 32, dtype=torch.uint8)).shape == (3, 32, 32)
