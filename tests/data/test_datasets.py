"""Dataset readers on tiny fixtures in the exact on-disk formats (see conftest.py), and every bad-input case:
each must raise DatasetError naming the file, and the line for list files."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.data import FASHION_MNIST_CLASSES, DatasetError, load_dataset, parse_spec, read_cifar10, read_idx
from visionlab.data.transforms import eval_transform

from .conftest import (
    CIFAR10_NAMES,
    MINIPLACES_FIXTURE_CLASSES,
    CifarSet,
    IdxSet,
    damage,
    error_of,
    insert_line,
    save_image,
    write_cifar_batch,
    write_idx,
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] back to the exact stored bytes (ToDtype scales by a rounded 1/255)."""
    return (x * 255).round().to(torch.uint8)


def eval_reference(path: Path, image_size: int = 128) -> torch.Tensor:
    with Image.open(path) as img:
        return eval_transform("miniplaces", image_size)(img.convert("RGB"))


# --------------------------------------------------------------------------------------------- MiniPlaces
def test_miniplaces_entries_labels_and_metadata(miniplaces: Path) -> None:
    bundle = load_dataset(f"miniplaces:{miniplaces}")
    assert (bundle.kind, bundle.root, bundle.recipe) == ("miniplaces", str(miniplaces), "miniplaces")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (100, 3, 128)
    assert (bundle.mean, bundle.std) == (IMAGENET_MEAN, IMAGENET_STD)
    images = miniplaces / "images"
    expected_train = [
        (images / f"train/{cls}/{k:08d}.jpg", label) for cls, label in MINIPLACES_FIXTURE_CLASSES for k in (1, 2)
    ]
    assert [(e.path, e.label) for e in bundle.train.entries] == expected_train
    assert [e.source for e in bundle.train.entries] == [f"{miniplaces / 'train.txt'}:{n}" for n in range(1, 7)]
    # val.txt has CRLF endings and blank lines: entries sit on lines 1, 2 and 4
    assert [(e.path.name, e.label) for e in bundle.val.entries] == [
        ("00000001.jpg", 7),
        ("00000002.jpg", 0),
        ("00000003.jpg", 1),
    ]
    assert [e.source for e in bundle.val.entries] == [f"{miniplaces / 'val.txt'}:{n}" for n in (1, 2, 4)]
    assert bundle.test is None


def test_miniplaces_bare_path_is_detected(miniplaces: Path) -> None:
    bare, prefixed = load_dataset(str(miniplaces)), load_dataset(f"miniplaces:{miniplaces}")
    assert bare.kind == "miniplaces"
    assert bare.train.entries == prefixed.train.entries and bare.val.entries == prefixed.val.entries


def test_miniplaces_class_names_from_categories_file(miniplaces: Path) -> None:
    names = load_dataset(str(miniplaces)).class_names
    assert len(names) == 100
    assert (names[0], names[1], names[7]) == ("abbey", "bakery", "canyon")
    assert (names[2], names[99]) == ("2", "99")  # labels without a category keep their number


def test_miniplaces_class_names_from_class_folders(miniplaces: Path) -> None:
    (miniplaces / "categories.txt").unlink()
    names = load_dataset(str(miniplaces)).class_names
    assert (names[0], names[1], names[7], names[2]) == ("abbey", "bakery", "canyon", "2")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [("abbey", "expected '/a/abbey 0'"), ("/b/bakery x", "expected '/a/abbey 0'"), ("/z/zoo 100", "label 100")],
)
def test_miniplaces_bad_categories_line(miniplaces: Path, line: str, fragment: str) -> None:
    insert_line(miniplaces / "categories.txt", 2, line)
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'categories.txt'}:2", fragment)


def test_miniplaces_items_are_float_pixels_and_val_is_deterministic(miniplaces: Path) -> None:
    bundle = load_dataset(str(miniplaces))
    torch.manual_seed(0)
    for i, entry in enumerate(bundle.train.entries):
        x, y = bundle.train[i]
        assert x.dtype == torch.float32 and x.shape == (3, 128, 128)
        assert x.min() >= 0.0 and x.max() <= 1.0 and y == entry.label
    torch.manual_seed(3)
    a = bundle.train[0][0]
    torch.manual_seed(3)
    assert torch.equal(a, bundle.train[0][0])
    v, label = bundle.val[0]
    assert label == 7 and v.dtype == torch.float32 and v.shape == (3, 128, 128)
    assert torch.equal(v, bundle.val[0][0])
    assert torch.equal(v, eval_reference(miniplaces / "images/val/00000001.jpg"))


def test_miniplaces_image_size(miniplaces: Path) -> None:
    bundle = load_dataset(str(miniplaces), image_size=64)
    assert bundle.image_size == 64
    assert bundle.train[0][0].shape == (3, 64, 64) and bundle.val[0][0].shape == (3, 64, 64)
    assert torch.equal(bundle.val[2][0], eval_reference(miniplaces / "images/val/00000003.jpg", 64))


def test_miniplaces_test_split_from_test_txt(miniplaces: Path) -> None:
    for k in (1, 2):
        save_image(miniplaces / f"images/test/{k:08d}.jpg", seed=200 + k)
    (miniplaces / "test.txt").write_text("test/00000002.jpg\n\n")  # listed files only, blank line tolerated
    bundle = load_dataset(str(miniplaces))
    assert bundle.test is not None and len(bundle.test) == 1
    assert [(e.path.name, e.label, e.source) for e in bundle.test.entries] == [
        ("00000002.jpg", -1, f"{miniplaces / 'test.txt'}:1")
    ]
    x, y = bundle.test[0]
    assert y == -1 and torch.equal(x, eval_reference(miniplaces / "images/test/00000002.jpg"))


def test_miniplaces_test_split_from_folder(miniplaces: Path) -> None:
    for k in (2, 1):
        save_image(miniplaces / f"images/test/{k:08d}.jpg", seed=200 + k)
    bundle = load_dataset(str(miniplaces))
    assert bundle.test is not None
    assert [(e.path.name, e.label) for e in bundle.test.entries] == [("00000001.jpg", -1), ("00000002.jpg", -1)]
    assert bundle.test[1][0].shape == (3, 128, 128)


def test_miniplaces_symlinked_split_folder_stays_inside_the_root(miniplaces: Path, tmp_path: Path) -> None:
    # images/train -> elsewhere (data on another disk) is not an escape; only the list's own paths are checked
    store = tmp_path / "store"
    shutil.move(miniplaces / "images/train", store)
    os.symlink(store, miniplaces / "images/train")
    (miniplaces / "categories.txt").unlink()
    bundle = load_dataset(str(miniplaces))
    assert bundle.train.entries[0].path == miniplaces / "images/train/a/abbey/00000001.jpg"
    assert (bundle.class_names[0], bundle.class_names[7]) == ("abbey", "canyon")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("train/a/abbey/missing.jpg 0", "does not exist"),
        ("train/a/abbey/00000001.jpg 100", "label 100 outside [0, 100)"),
        ("train/a/abbey/00000001.jpg -1", "label -1 outside [0, 100)"),
        ("../outside.jpg 0", "path '../outside.jpg' escapes the image root"),
        ("train/../../train.txt 0", "path 'train/../../train.txt' escapes the image root"),
        ("/etc/passwd 0", "absolute path '/etc/passwd' not allowed"),
        ("C:/images/x.jpg 0", "absolute path 'C:/images/x.jpg' not allowed"),
        ("train/a/abbey/00000001.jpg 0 extra", "expected 'relative/path.jpg LABEL'"),
        ("train/a/abbey/00000001.jpg", "expected 'relative/path.jpg LABEL'"),
        ("train/a/abbey/00000001.jpg zero", "label 'zero' is not an integer"),
        ("train/a/abbey/00000001.jpg 1.5", "label '1.5' is not an integer"),
    ],
)
def test_bad_list_line_names_file_and_line(miniplaces: Path, line: str, fragment: str) -> None:
    save_image(miniplaces / "outside.jpg", seed=0)  # exists, so only the escape itself can be the error
    insert_line(miniplaces / "train.txt", 3, line)
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'train.txt'}:3: ", fragment)


def test_bad_line_after_crlf_blank_line_names_the_right_line(miniplaces: Path) -> None:
    (miniplaces / "val.txt").write_bytes(b"val/00000001.jpg 7\r\n\r\nval/00000002.jpg 100\r\n")
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'val.txt'}:3: label 100 outside")


def test_bad_line_in_test_list(miniplaces: Path) -> None:
    (miniplaces / "test.txt").write_text("test/none.jpg\n")
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'test.txt'}:1: ", "does not exist")


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated_header", "truncated_data"])
def test_corrupt_image_is_reported_at_load_with_its_line(miniplaces: Path, how: str) -> None:
    image = miniplaces / "images/train/b/bakery/00000002.jpg"  # train.txt line 4
    damage(image, how)
    error_of(
        lambda: load_dataset(str(miniplaces)),
        f"{miniplaces / 'train.txt'}:4: unreadable or corrupt image {image}",
    )


def test_corrupt_val_and_test_folder_images_are_reported(miniplaces: Path) -> None:
    damage(miniplaces / "images/val/00000003.jpg", "truncated_data")
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'val.txt'}:4: unreadable or corrupt image")
    save_image(miniplaces / "images/val/00000003.jpg", seed=1)
    bad = miniplaces / "images/test/00000001.jpg"
    save_image(bad, seed=2)
    damage(bad, "garbage")
    error_of(lambda: load_dataset(str(miniplaces)), f"{bad}: unreadable or corrupt image")


def test_check_images_false_skips_the_scan(miniplaces: Path) -> None:
    damage(miniplaces / "images/train/a/abbey/00000001.jpg", "garbage")
    assert len(load_dataset(str(miniplaces), check_images=False).train) == 6


@pytest.mark.parametrize("how", ["garbage", "truncated_data", "deleted"])
def test_decode_failure_at_getitem_names_the_list_line(miniplaces: Path, how: str) -> None:
    bundle = load_dataset(str(miniplaces), check_images=False)
    image = miniplaces / "images/train/c/canyon/00000001.jpg"  # train.txt line 5, index 4
    if how == "deleted":
        image.unlink()
    else:
        damage(image, how)
    error_of(lambda: bundle.train[4], f"{miniplaces / 'train.txt'}:5: cannot decode image {image}")
    assert bundle.train[3][1] == 1  # the other items still load


@pytest.mark.parametrize("name", ["train.txt", "val.txt", "test.txt"])
def test_empty_split_is_an_error(miniplaces: Path, name: str) -> None:
    (miniplaces / name).write_bytes(b"\r\n   \n\t\n")
    error_of(lambda: load_dataset(f"miniplaces:{miniplaces}"), f"{miniplaces / name}: the split is empty")


@pytest.mark.parametrize("name", ["train.txt", "val.txt"])
def test_missing_list_file_is_an_error(miniplaces: Path, name: str) -> None:
    (miniplaces / name).unlink()
    error_of(lambda: load_dataset(f"miniplaces:{miniplaces}"), f"{miniplaces / name}: list file missing")


def test_undecodable_list_file_is_an_error(miniplaces: Path) -> None:
    (miniplaces / "val.txt").write_bytes(b"val/\xff\xfe.jpg 0\n")
    error_of(lambda: load_dataset(str(miniplaces)), f"{miniplaces / 'val.txt'}: unreadable")


def test_grayscale_cmyk_and_png_files_in_a_list_become_rgb(miniplaces: Path) -> None:
    """A MiniPlaces list names .jpg files; what they hold is recognised by its bytes, not the name."""
    images = miniplaces / "images/train"
    gray, cmyk, png = images / "a/abbey/00000001.jpg", images / "a/abbey/00000002.jpg", images / "b/bakery/00000001.jpg"
    save_image(gray, seed=1, mode="L")
    with Image.open(cmyk) as img:
        img.convert("CMYK").save(cmyk)
    pixels = np.random.default_rng(2).integers(0, 256, (16, 20, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(png, format="PNG")
    bundle = load_dataset(str(miniplaces))
    bundle.train.transform = eval_transform("miniplaces", 16)
    for i in range(3):
        assert bundle.train[i][0].shape == (3, 16, 16)
    bundle.train.transform = lambda image: image  # the decoded image itself
    decoded = bundle.train[2][0]
    assert torch.equal(decoded, torch.from_numpy(pixels[..., :3]).permute(2, 0, 1))  # alpha dropped, exact
    assert torch.equal(bundle.train[0][0][0], bundle.train[0][0][2])  # gray replicated


# --------------------------------------------------------------------------------------------- IDX
def test_read_idx_round_trip(fashion_mnist: IdxSet, tmp_path: Path) -> None:
    images_gz = fashion_mnist.root / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(images_gz.read_bytes())
    assert payload[:16] == bytes.fromhex("00000803000000060000001c0000001c")  # magic, N, rows, cols
    x = read_idx(images_gz)
    assert x.dtype == torch.uint8 and x.shape == (6, 28, 28)
    assert np.array_equal(x.numpy(), fashion_mnist.train_x)
    y = read_idx(fashion_mnist.root / "train-labels-idx1-ubyte.gz")
    assert gzip.decompress((fashion_mnist.root / "train-labels-idx1-ubyte.gz").read_bytes())[:8] == bytes.fromhex(
        "0000080100000006"
    )
    assert y.tolist() == fashion_mnist.train_y.tolist()
    raw = tmp_path / "train-images-idx3-ubyte"  # uncompressed files are read too
    raw.write_bytes(payload)
    assert torch.equal(read_idx(raw), x)


@pytest.mark.parametrize("form", ["bare", "prefixed"])
def test_fashion_mnist_directory(fashion_mnist: IdxSet, form: str) -> None:
    root = fashion_mnist.root
    bundle = load_dataset(str(root) if form == "bare" else f"fashion-mnist:{root}")
    assert (bundle.kind, bundle.root, bundle.recipe) == ("fashion-mnist", str(root), "small")
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (10, 1, 28)
    assert (len(bundle.train), len(bundle.val)) == (6, 4)
    assert bundle.class_names == list(FASHION_MNIST_CLASSES) and bundle.class_names[9] == "Ankle boot"
    for i in range(4):
        x, y = bundle.val[i]
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        assert np.array_equal(to_uint8(x[0]).numpy(), fashion_mnist.test_x[i])
        assert y == fashion_mnist.test_y[i]
    torch.manual_seed(0)
    x, y = bundle.train[1]
    image = torch.from_numpy(fashion_mnist.train_x[1])
    assert y == 9 and x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert torch.equal(to_uint8(x[0]), image) or torch.equal(to_uint8(x[0]), image.flip(-1))  # flip-only recipe


def test_fashion_mnist_rejects_another_image_size(fashion_mnist: IdxSet) -> None:
    error_of(lambda: load_dataset(str(fashion_mnist.root), image_size=32), "fashion-mnist images are 28x28")


def _gz(payload: bytes) -> bytes:
    return gzip.compress(payload)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (lambda p: _gz(b"\x12\x34" + p[2:]), "not an IDX file (bad magic number)"),
        (lambda p: _gz(p[:2]), "not an IDX file (bad magic number)"),
        (lambda p: _gz(b"\x00\x00\x0d" + p[3:]), "IDX element type 0x0d unsupported"),
        (lambda p: _gz(p[:10]), "truncated IDX header"),
        (lambda p: _gz(p[:-100]), "IDX header says shape (6, 28, 28) (4704 bytes) but holds 4604"),
        (lambda p: _gz(p + b"\x00"), "IDX header says shape (6, 28, 28) (4704 bytes) but holds 4705"),
        (lambda p: _gz(p)[:-30], "unreadable"),  # truncated gzip stream
        (lambda p: p, "unreadable"),  # not gzip at all
    ],
)
def test_bad_idx_file_is_named(fashion_mnist: IdxSet, content: Callable[[bytes], bytes], fragment: str) -> None:
    path = fashion_mnist.root / "train-images-idx3-ubyte.gz"
    path.write_bytes(content(gzip.decompress(path.read_bytes())))
    error_of(lambda: read_idx(path), f"{path}: ", fragment)
    error_of(lambda: load_dataset(f"fashion-mnist:{fashion_mnist.root}"), f"{path}: ", fragment)


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_fashion_mnist_image_label_count_mismatch(fashion_mnist: IdxSet, split: str) -> None:
    labels = fashion_mnist.root / f"{split}-labels-idx1-ubyte.gz"
    n_images = len(read_idx(fashion_mnist.root / f"{split}-images-idx3-ubyte.gz"))
    write_idx(labels, np.zeros(n_images - 1, dtype=np.uint8))
    error_of(
        lambda: load_dataset(str(fashion_mnist.root)),
        f"{labels}: {n_images - 1} labels but {split}-images-idx3-ubyte.gz holds {n_images} images",
    )


def test_fashion_mnist_label_out_of_range_and_missing_file(fashion_mnist: IdxSet) -> None:
    labels = fashion_mnist.root / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.array([0, 1, 10, 2], dtype=np.uint8))
    error_of(lambda: load_dataset(str(fashion_mnist.root)), f"{labels}: label 10 outside [0, 10)")
    labels.unlink()
    error_of(lambda: load_dataset(str(fashion_mnist.root)), f"{labels}: missing")


def test_fashion_mnist_empty_split(fashion_mnist: IdxSet) -> None:
    write_idx(fashion_mnist.root / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(fashion_mnist.root / "train-labels-idx1-ubyte.gz", np.zeros(0, dtype=np.uint8))
    error_of(lambda: load_dataset(str(fashion_mnist.root)), "the train split is empty")


# --------------------------------------------------------------------------------------------- CIFAR-10
def test_cifar10_pixel_layout_labels_and_names(cifar10: CifarSet) -> None:
    (x, y), (tx, ty), names = read_cifar10(cifar10.root / "cifar-10-batches-py")
    data = np.concatenate([cifar10.batches[f"data_batch_{k}"][0] for k in range(1, 6)])
    assert x.dtype == torch.uint8 and x.shape == (10, 3, 32, 32) and tx.shape == (2, 3, 32, 32)
    assert x[3, 2, 5, 7] == data[3, 2 * 1024 + 5 * 32 + 7]  # one pixel by hand: row 3, blue, y=5, x=7
    c, row, col = np.indices((3, 32, 32))
    assert np.array_equal(x.numpy(), data[:, c * 1024 + row * 32 + col])  # image[c, y, x] = data[c*1024+y*32+x]
    test_data = cifar10.batches["test_batch"][0]
    assert np.array_equal(tx.numpy(), test_data[:, c * 1024 + row * 32 + col])
    assert y.dtype == torch.int64 and y.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and ty.tolist() == [5, 4]
    assert names == list(CIFAR10_NAMES)


@pytest.mark.parametrize("spec", ["{root}", "{root}/cifar-10-batches-py", "cifar10:{root}"])
def test_cifar10_bundle_and_subfolder_detection(cifar10: CifarSet, spec: str) -> None:
    bundle = load_dataset(spec.format(root=cifar10.root))
    assert (bundle.kind, bundle.root) == ("cifar10", str(cifar10.root / "cifar-10-batches-py"))
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size, len(bundle.train), len(bundle.val)) == (
        10,
        3,
        32,
        10,
        2,
    )
    assert bundle.class_names[3] == "cat"
    x, y = bundle.val[1]
    expected = torch.from_numpy(cifar10.batches["test_batch"][0][1].reshape(3, 32, 32))
    assert y == 4 and x.dtype == torch.float32 and torch.equal(to_uint8(x), expected)
    x, y = bundle.train[0]
    assert y == 0 and x.shape == (3, 32, 32) and x.min() >= 0.0 and x.max() <= 1.0


def test_cifar10_without_meta_uses_numbers(cifar10: CifarSet) -> None:
    (cifar10.root / "cifar-10-batches-py/batches.meta").unlink()
    assert load_dataset(str(cifar10.root)).class_names == [str(i) for i in range(10)]


def test_cifar10_rejects_another_image_size(cifar10: CifarSet) -> None:
    error_of(lambda: load_dataset(str(cifar10.root), image_size=64), "cifar10 images are 32x32")


@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        ("data_batch_3", "delete", "missing CIFAR-10 batch"),
        ("test_batch", "delete", "missing CIFAR-10 batch"),
        ("data_batch_2", [0, 10], "label outside [0, 10)"),
        ("data_batch_5", [-1, 0], "label outside [0, 10)"),
        ("test_batch", [10, 0], "label outside [0, 10)"),
        ("data_batch_4", [0, 1, 2], "expected b'data' (N, 3072) uint8 and N b'labels'"),
        ("data_batch_1", "narrow", "expected b'data' (N, 3072) uint8 and N b'labels'"),
        ("data_batch_1", "garbage", "not a CIFAR-10 python batch"),
    ],
)
def test_bad_cifar10_batch_is_named(cifar10: CifarSet, name: str, damage: object, fragment: str) -> None:
    path = cifar10.root / "cifar-10-batches-py" / name
    data, _ = cifar10.batches[name]
    if damage == "delete":
        path.unlink()
    elif damage == "narrow":
        write_cifar_batch(path, data[:, :1024], [0, 1])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04 not a pickle")
    else:
        write_cifar_batch(path, data, damage)
    error_of(lambda: load_dataset(str(cifar10.root)), f"{path}: {fragment}")


def test_cifar10_batch_without_keys_is_named(cifar10: CifarSet) -> None:
    path = cifar10.root / "cifar-10-batches-py/data_batch_1"
    path.write_bytes(pickle.dumps({b"pixels": cifar10.batches["data_batch_1"][0]}))
    error_of(lambda: read_cifar10(path.parent), f"{path}: expected b'data'")


# --------------------------------------------------------------------------------------------- ImageFolder
def test_image_folder_sorted_classes_labels_and_pixels(image_folder: Path) -> None:
    bundle = load_dataset(f"folder:{image_folder}", image_size=64)
    assert (bundle.kind, bundle.root, bundle.num_classes, bundle.class_names) == (
        "folder",
        str(image_folder),
        2,
        ["cat", "dog"],
    )
    assert [(e.path.parent.name, e.path.name, e.label) for e in bundle.train.entries] == [
        ("cat", "0.png", 0),
        ("cat", "1.png", 0),
        ("cat", "2.png", 0),
        ("dog", "0.png", 1),
        ("dog", "1.png", 1),
    ]
    assert [(e.path.parent.name, e.label) for e in bundle.val.entries] == [("cat", 0), ("dog", 1)]
    x, y = bundle.val[1]
    assert y == 1 and torch.equal(x, eval_reference(image_folder / "val/dog/0.png", 64))
    x, y = bundle.train[4]
    assert y == 1 and x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert load_dataset(str(image_folder)).kind == "folder"  # bare path detected


def test_image_folder_ignores_other_files_and_allows_a_train_only_class(image_folder: Path) -> None:
    (image_folder / "train/cat/notes.txt").write_text("not an image")
    save_image(image_folder / "train/fox/0.png", seed=50)
    shutil.rmtree(image_folder / "val/dog")
    save_image(image_folder / "val/fox/0.png", seed=51)
    bundle = load_dataset(str(image_folder))
    assert bundle.class_names == ["cat", "dog", "fox"] and len(bundle.train) == 6
    assert [(e.path.parent.name, e.label) for e in bundle.val.entries] == [("cat", 0), ("fox", 2)]


def test_image_folder_val_class_not_in_train(image_folder: Path) -> None:
    save_image(image_folder / "val/bird/0.png", seed=52)
    error_of(
        lambda: load_dataset(str(image_folder)),
        f"{image_folder / 'val'}: class folders ['bird'] do not exist in {image_folder / 'train'}",
    )


def test_image_folder_empty_split(image_folder: Path) -> None:
    for image in (image_folder / "val").rglob("*.png"):
        image.unlink()
    (image_folder / "val/cat/readme.txt").write_text("no images here")
    error_of(lambda: load_dataset(str(image_folder)), f"{image_folder / 'val'}: the split is empty")
    shutil.rmtree(image_folder / "val")
    (image_folder / "val").mkdir()
    error_of(lambda: load_dataset(str(image_folder)), f"{image_folder / 'val'}: no class folders")
    (image_folder / "val").rmdir()
    error_of(lambda: load_dataset(f"folder:{image_folder}"), f"{image_folder / 'val'}: missing")


def test_image_folder_corrupt_image_is_named(image_folder: Path) -> None:
    bad = image_folder / "train/dog/1.png"
    bad.write_bytes(bad.read_bytes()[:-20])
    error_of(lambda: load_dataset(str(image_folder)), f"{bad}: unreadable or corrupt image")


# --------------------------------------------------------------------------------------------- parse_spec
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fashion-mnist", ("fashion-mnist", "")),
        ("fashionmnist", ("fashion-mnist", "")),
        ("fmnist", ("fashion-mnist", "")),
        ("fashion-mnist:/data/fm", ("fashion-mnist", "/data/fm")),
        ("miniplaces:/data/mp", ("miniplaces", "/data/mp")),
        ("miniplaces:rel/mp", ("miniplaces", "rel/mp")),
        ("miniplaces:/odd:dir", ("miniplaces", "/odd:dir")),
        ("folder:/data/f", ("folder", "/data/f")),
        ("cifar10:/data/c", ("cifar10", "/data/c")),
    ],
)
def test_parse_spec_prefix_forms(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_detects_bare_paths(
    miniplaces: Path, fashion_mnist: IdxSet, cifar10: CifarSet, image_folder: Path
) -> None:
    assert parse_spec(str(miniplaces)) == ("miniplaces", str(miniplaces))
    assert parse_spec(str(fashion_mnist.root)) == ("fashion-mnist", str(fashion_mnist.root))
    assert parse_spec(str(cifar10.root)) == ("cifar10", str(cifar10.root))
    batches = str(cifar10.root / "cifar-10-batches-py")
    assert parse_spec(batches) == ("cifar10", batches)
    assert parse_spec(str(image_folder)) == ("folder", str(image_folder))
    (image_folder / "train.txt").write_text("")  # a list file wins over class folders
    assert parse_spec(str(image_folder))[0] == "miniplaces"


@pytest.mark.parametrize("spec", ["{tmp}/nothing", "imagenet:{tmp}"])
def test_parse_spec_unknown_directory(tmp_path: Path, spec: str) -> None:
    spec = spec.format(tmp=tmp_path)
    error_of(lambda: parse_spec(spec), f"dataset {spec!r}: no such directory", "miniplaces:PATH")
    error_of(lambda: load_dataset(spec), "no such directory")


def test_parse_spec_unrecognised_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()  # no val/: not an ImageFolder tree
    error_of(lambda: parse_spec(str(tmp_path)), f"{tmp_path}: cannot tell the dataset format")


def test_reader_edge_cases_name_the_file(tmp_path: Path) -> None:
    """Empty CIFAR batch, IDX of the wrong rank, hidden folders in an ImageFolder tree."""
    from ..conftest import make_fashion_mnist

    root = make_fashion_mnist(tmp_path / "fm", n_train=4, n_test=2)
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28 * 28), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: IDX array has 2 dimensions, expected 3"):
        load_dataset(str(root))
    cifar = tmp_path / "c"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}))
    with pytest.raises(DatasetError, match=r"data_batch_1: the batch is empty"):
        load_dataset(f"cifar10:{cifar}")
    for split in ("train", "val"):
        for cls in ("cat", ".ipynb_checkpoints"):
            (tmp_path / "f" / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "f" / split / cls / "0.png")
    assert load_dataset(f"folder:{tmp_path / 'f'}").class_names == ["cat"]
