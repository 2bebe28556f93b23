"""Every validation of the dataset readers at its boundary: for each, the nearest input that must pass and the
nearest that must fail (off by one, ``<`` against ``<=``, a lexical look-alike, missing against empty), each
refusal a DatasetError naming the file (and the line, for list files). Tiny data in the real formats (conftest.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from visionlab.data import DatasetError, load_dataset, parse_list_file, read_cifar10
from visionlab.data.lists import MINIPLACES_CLASSES

from .conftest import CifarSet, IdxSet, insert_line, save_image, write_cifar_batch, write_idx


def message_of(call) -> str:
    with pytest.raises(DatasetError) as info:
        call()
    return str(info.value)


# --------------------------------------------------------------------------------------------- MiniPlaces lists
def _one_line(miniplaces: Path, line: str) -> Path:
    listed = miniplaces / "one.txt"
    listed.write_text(f"{line}\n")
    return listed


@pytest.mark.parametrize(("label", "value"), [("99", 99), ("0", 0), ("007", 7), ("-0", 0)])
def test_a_label_below_the_class_count_in_ascii_digits_is_taken(miniplaces: Path, label: str, value: int) -> None:
    listed = _one_line(miniplaces, f"train/a/abbey/00000001.jpg {label}")
    assert [e.label for e in parse_list_file(listed, miniplaces / "images", MINIPLACES_CLASSES)] == [value]


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("100", "label 100 outside [0, 100)"),
        ("-1", "label -1 outside [0, 100)"),
        ("1_0", "label '1_0' is not an integer"),  # int() reads 10
        ("+5", "label '+5' is not an integer"),  # int() reads 5
        ("\u0663", "label '\u0663' is not an integer"),  # ARABIC-INDIC DIGIT THREE: int() reads 3
        ("\uff15", "label '\uff15' is not an integer"),  # FULLWIDTH DIGIT FIVE: int() reads 5
        ("5.", "label '5.' is not an integer"),
    ],
)
def test_a_label_at_or_past_the_class_count_or_not_in_ascii_digits_is_refused(
    miniplaces: Path, label: str, problem: str
) -> None:
    listed = _one_line(miniplaces, f"train/a/abbey/00000001.jpg {label}")
    assert message_of(lambda: parse_list_file(listed, miniplaces / "images", MINIPLACES_CLASSES)) == (
        f"{listed}:1: {problem}"
    )


@pytest.mark.parametrize(
    ("rel", "path"),
    [
        ("train/b/../a/abbey/00000001.jpg", "train/a/abbey/00000001.jpg"),  # '..' that stays inside
        ("train/../../images/train/a/abbey/00000001.jpg", "train/a/abbey/00000001.jpg"),  # out and back in
        ("train/a/abbey/..00000001.jpg", "train/a/abbey/..00000001.jpg"),  # a name starting with '..' is no parent
        ("tr:ain/x.jpg", "tr:ain/x.jpg"),  # a colon past the second character is no drive letter
    ],
)
def test_a_path_that_resolves_inside_the_image_root_is_taken(miniplaces: Path, rel: str, path: str) -> None:
    save_image(miniplaces / "images/train/a/abbey/..00000001.jpg", seed=1)
    save_image(miniplaces / "images/tr:ain/x.jpg", seed=4)
    listed = _one_line(miniplaces, f"{rel} 0")
    (entry,) = parse_list_file(listed, miniplaces / "images", MINIPLACES_CLASSES)
    assert entry.path == miniplaces / "images" / path


@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("../images-extra/x.jpg", "path '../images-extra/x.jpg' escapes the image root {images}"),  # a prefix twin
        ("../images", "image {images} does not exist"),  # the root itself: inside, but no file
        ("train/../../x.jpg", "path 'train/../../x.jpg' escapes the image root {images}"),
        ("train", "image {images}/train does not exist"),  # a folder, not an image
        ("/x.jpg", "absolute path '/x.jpg' not allowed (paths are relative to {images})"),
    ],
)
def test_a_path_that_leaves_the_image_root_or_is_no_file_is_refused(miniplaces: Path, rel: str, problem: str) -> None:
    save_image(miniplaces / "images-extra/x.jpg", seed=2)  # exists: only the escape can be the error
    save_image(miniplaces / "x.jpg", seed=3)
    listed = _one_line(miniplaces, f"{rel} 0")
    expected = f"{listed}:1: " + problem.format(images=miniplaces / "images")
    assert message_of(lambda: parse_list_file(listed, miniplaces / "images", MINIPLACES_CLASSES)) == expected


def test_a_list_of_one_image_is_a_split(miniplaces: Path) -> None:
    listed = _one_line(miniplaces, "val/00000001.jpg 7")
    assert len(parse_list_file(listed, miniplaces / "images", MINIPLACES_CLASSES)) == 1


# --------------------------------------------------------------------------------------------- categories.txt
def test_the_last_class_is_named_by_categories_and_a_line_of_spaces_is_blank(miniplaces: Path) -> None:
    insert_line(miniplaces / "categories.txt", 1, "/z/zoo 99")
    insert_line(miniplaces / "categories.txt", 2, " \t ")
    names = load_dataset(str(miniplaces), check_images=False).class_names
    assert (names[99], names[0], names[7]) == ("zoo", "abbey", "canyon")


@pytest.mark.parametrize("label", ["\u00b2", "--5", "1_0", "+5"])  # SUPERSCRIPT TWO passes str.isdigit()
def test_a_categories_label_not_in_ascii_digits_is_a_malformed_line(miniplaces: Path, label: str) -> None:
    insert_line(miniplaces / "categories.txt", 2, f"/z/zoo {label}")
    assert message_of(lambda: load_dataset(str(miniplaces), check_images=False)) == (
        f"{miniplaces / 'categories.txt'}:2: expected '/a/abbey 0', got '/z/zoo {label}'"
    )


# --------------------------------------------------------------------------------------------- Fashion-MNIST
def test_one_label_more_than_images_is_refused(fashion_mnist: IdxSet) -> None:
    labels = fashion_mnist.root / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(7, dtype=np.uint8))  # 6 images
    assert message_of(lambda: load_dataset(str(fashion_mnist.root))) == (
        f"{labels}: 7 labels but train-images-idx3-ubyte.gz holds 6 images"
    )


@pytest.mark.parametrize(("name", "shape", "expected"), [("t10k-labels-idx1-ubyte.gz", (4, 1), 1),
                                                     ("train-images-idx3-ubyte.gz", (6, 28, 28, 1), 3)])  # fmt: skip
def test_an_idx_array_of_one_dimension_more_is_refused(
    fashion_mnist: IdxSet, name: str, shape: tuple[int, ...], expected: int
) -> None:
    write_idx(fashion_mnist.root / name, np.zeros(shape, dtype=np.uint8))
    assert message_of(lambda: load_dataset(str(fashion_mnist.root))) == (
        f"{fashion_mnist.root / name}: IDX array has {len(shape)} dimensions, expected {expected}"
    )


def test_an_empty_test_split_is_refused(fashion_mnist: IdxSet) -> None:
    write_idx(fashion_mnist.root / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(fashion_mnist.root / "t10k-labels-idx1-ubyte.gz", np.zeros(0, dtype=np.uint8))
    assert message_of(lambda: load_dataset(str(fashion_mnist.root))) == (
        f"{fashion_mnist.root}: the t10k split is empty"
    )


def test_square_images_of_one_size_in_both_splits_set_the_image_size(fashion_mnist: IdxSet) -> None:
    write_idx(fashion_mnist.root / "train-images-idx3-ubyte.gz", np.zeros((6, 20, 20), dtype=np.uint8))
    write_idx(fashion_mnist.root / "t10k-images-idx3-ubyte.gz", np.zeros((4, 20, 20), dtype=np.uint8))
    bundle = load_dataset(str(fashion_mnist.root))
    assert (bundle.image_size, tuple(bundle.train.images.shape), tuple(bundle.val.images.shape)) == (
        20, (6, 1, 20, 20), (4, 1, 20, 20)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("train", "test", "problem"),
    [
        ((28, 27), (28, 27), "train-images-idx3-ubyte.gz: images are 28x27, not square"),
        ((28, 28), (27, 28), "t10k-images-idx3-ubyte.gz: images are 27x28, not square"),
        ((28, 28), (29, 29), "t10k-images-idx3-ubyte.gz: images are 29x29, but train-images-idx3-ubyte.gz's are 28x28"),
    ],
)
def test_images_not_square_or_of_another_size_than_the_training_ones_are_refused(
    fashion_mnist: IdxSet, train: tuple[int, int], test: tuple[int, int], problem: str
) -> None:
    write_idx(fashion_mnist.root / "train-images-idx3-ubyte.gz", np.zeros((6, *train), dtype=np.uint8))
    write_idx(fashion_mnist.root / "t10k-images-idx3-ubyte.gz", np.zeros((4, *test), dtype=np.uint8))
    assert message_of(lambda: load_dataset(str(fashion_mnist.root))) == f"{fashion_mnist.root}/{problem}"


# --------------------------------------------------------------------------------------------- CIFAR-10
def _test_batch(cifar10: CifarSet) -> Path:
    return cifar10.root / "cifar-10-batches-py" / "test_batch"


def test_integer_pixels_from_0_to_255_in_any_storage_are_taken(cifar10: CifarSet) -> None:
    data = np.zeros((2, 3072), dtype=np.int64)
    data[0, 0], data[1, -1] = 255, 0
    write_cifar_batch(_test_batch(cifar10), data, np.array([9, 0], dtype=np.int16))
    _, (x, y), _ = read_cifar10(_test_batch(cifar10).parent)
    assert (x[0, 0, 0, 0].item(), x[1, 2, 31, 31].item(), y.tolist()) == (255, 0, [9, 0])


@pytest.mark.parametrize(
    ("data", "labels", "problem"),
    [
        (np.full((2, 3072), 256, dtype=np.int64), [0, 1], "pixels must be integers in [0, 255], got 256 to 256"),
        (np.full((2, 3072), -1, dtype=np.int16), [0, 1], "pixels must be integers in [0, 255], got -1 to -1"),
        (np.full((2, 3072), 0.7, dtype=np.float32), [0, 1], "pixels must be integers in [0, 255], got float32"),
        (np.zeros((2, 3072), dtype=np.uint8), [0.0, 1.9], "labels must be integers, got float64"),
        (np.zeros((2, 3072), dtype=np.uint8), [True, False], "labels must be integers, got bool"),
        (np.zeros((2, 3073), dtype=np.uint8), [0, 1], "expected b'data' (N, 3072) uint8 and N b'labels'"),
        (np.zeros((2, 3071), dtype=np.uint8), [0, 1], "expected b'data' (N, 3072) uint8 and N b'labels'"),
        (np.zeros((2, 3072), dtype=np.uint8), [0], "expected b'data' (N, 3072) uint8 and N b'labels'"),
        (np.zeros((2, 3072), dtype=np.uint8), [[0], [1]], "expected b'data' (N, 3072) uint8 and N b'labels'"),
        (np.zeros((2, 1, 3072), dtype=np.uint8), [0, 1], "expected b'data' (N, 3072) uint8 and N b'labels'"),
    ],
)
def test_a_batch_whose_values_a_cast_would_change_or_of_another_shape_is_refused(
    cifar10: CifarSet, data: np.ndarray, labels: list, problem: str
) -> None:
    write_cifar_batch(_test_batch(cifar10), data, labels)
    assert message_of(lambda: read_cifar10(_test_batch(cifar10).parent)) == f"{_test_batch(cifar10)}: {problem}"


@pytest.mark.parametrize("batch", [[b"data", b"labels"], None, {b"data": [[1, 2], [3]], b"labels": [0, 1]}])
def test_a_batch_that_is_no_dict_of_arrays_is_refused(cifar10: CifarSet, batch: object) -> None:
    _test_batch(cifar10).write_bytes(pickle.dumps(batch))
    assert message_of(lambda: read_cifar10(_test_batch(cifar10).parent)) == (
        f"{_test_batch(cifar10)}: expected b'data' (N, 3072) uint8 and N b'labels'"
    )


class _Mkdir:
    """Pickles as a call of ``os.mkdir(path)``: what a booby-trapped batch would run while it is unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_batch_that_names_any_other_callable_is_refused_without_running_it(cifar10: CifarSet, tmp_path: Path) -> None:
    trap = tmp_path / "ran"
    _test_batch(cifar10).write_bytes(pickle.dumps({b"data": _Mkdir(trap), b"labels": []}))
    assert message_of(lambda: read_cifar10(_test_batch(cifar10).parent)) == (
        f"{_test_batch(cifar10)}: not a CIFAR-10 python batch (it names {os.mkdir.__module__}.mkdir, which a "
        "CIFAR-10 batch never holds)"
    )
    assert not trap.exists()


def test_a_batch_pickled_as_the_official_files_are_is_read(cifar10: CifarSet) -> None:
    """The official batches were pickled by numpy 1.x under Python 2: protocol 2, ``numpy.core.multiarray``."""
    data, labels = cifar10.batches["test_batch"]
    official = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    official = official.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in official and b"_codecs" in official
    _test_batch(cifar10).write_bytes(official)
    (test_x, test_y) = read_cifar10(_test_batch(cifar10).parent)[1]
    assert np.array_equal(test_x.numpy().reshape(len(labels), -1), data) and test_y.tolist() == labels


def _meta(cifar10: CifarSet, meta: object) -> Path:
    path = cifar10.root / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(pickle.dumps(meta))
    return path


def test_ten_class_names_or_none_are_taken(cifar10: CifarSet) -> None:
    names = [f"c{i}" for i in range(10)]
    _meta(cifar10, {b"label_names": [n.encode() for n in names]})
    assert read_cifar10(cifar10.root / "cifar-10-batches-py")[2] == names
    _meta(cifar10, {b"label_names": names})  # str, as Python 3 pickles them
    assert read_cifar10(cifar10.root / "cifar-10-batches-py")[2] == names
    _meta(cifar10, {b"num_vis": 3072})  # no names: numbers
    assert read_cifar10(cifar10.root / "cifar-10-batches-py")[2] == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "meta",
    [{b"label_names": [b"c"] * 9}, {b"label_names": [b"c"] * 11}, {b"label_names": []}, {b"label_names": [1] * 10},
     [b"c"] * 10],
)  # fmt: skip
def test_class_names_that_are_not_ten_strings_are_refused(cifar10: CifarSet, meta: object) -> None:
    path = _meta(cifar10, meta)
    assert message_of(lambda: read_cifar10(path.parent)) == (
        f"{path}: expected b'label_names', a list of the 10 class names"
    )


# --------------------------------------------------------------------------------------------- ImageFolder
def test_a_class_is_a_folder_and_an_image_a_file_of_an_image_suffix_in_any_case(image_folder: Path) -> None:
    (image_folder / "train/readme.txt").write_text("not a class")
    (image_folder / "train/zebra").mkdir()  # a folder directly under train/ is a class, even without images...
    (image_folder / "train/cat/folder.png").mkdir()  # ...but under a class, a folder is no image
    save_image(image_folder / "train/dog/UPPER.PNG", seed=60)
    bundle = load_dataset(str(image_folder))
    assert bundle.class_names == ["cat", "dog", "zebra"]
    assert [(e.path.name, e.label) for e in bundle.train.entries] == [
        ("0.png", 0), ("1.png", 0), ("2.png", 0), ("0.png", 1), ("1.png", 1), ("UPPER.PNG", 1)
    ]  # fmt: skip
