"""Dataset readers for the on-disk formats visionlab understands, and the one-string dataset spec.

Spec strings (the command line's ``--data``, or ``main.py DATA``)::

    fashion-mnist            the embedded default (fetched into the data root when missing)
    miniplaces:PATH          PATH/train.txt, PATH/val.txt (lines "relative/path.jpg LABEL") under PATH/images/
    folder:PATH              PATH/train/<class>/*, PATH/val/<class>/* (torchvision ImageFolder layout)
    cifar10:PATH             CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)
    PATH                     auto-detected among the three above

Every reader validates what it can before training starts: a malformed list line, a label outside
``[0, num_classes)`` or not in ASCII digits, a path escaping the image root, a missing or undecodable image, an
empty split, CIFAR-10 values a cast to ``uint8`` / ``int64`` would change, class names that are not one per
class, Fashion-MNIST images not square or not of one size -> a :class:`DatasetError` that names the file and line.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from visionlab.data.decode import ImageCache, ImageDecodeError, read_image
from visionlab.data.fetch import default_data_root, fetch_fashion_mnist
from visionlab.data.kinds import DATASET_KINDS, DEFAULT_IMAGE_SIZE, FASHION_MNIST_ALIASES, fixed_image_size
from visionlab.data.lists import LABEL_INTEGER, MINIPLACES_CLASSES, ListEntry, parse_list_file
from visionlab.data.memory import BatchAugment, TensorImageDataset
from visionlab.data.transforms import eval_transform, split_deterministic, to_float_transform, train_transform
from visionlab.errors import DatasetError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DataBundle",
    "ImageListDataset",
    "load_dataset",
    "parse_spec",
    "read_cifar10",
    "read_idx",
]

Transform = Callable[[Any], torch.Tensor]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


# --------------------------------------------------------------------------------------------- datasets
class ImageListDataset(Dataset):
    """Images decoded from files (MiniPlaces lists, ImageFolder trees) and transformed on tensors.

    Each file is decoded straight to a ``uint8`` RGB tensor ``(3, H, W)`` (:func:`~visionlab.data.decode.read_image`:
    torchvision's JPEG/PNG decoders, no PIL image in between) and handed to ``transform``, a ``transforms.v2``
    pipeline. A file that cannot be decoded raises :class:`DatasetError` naming its list line and path.

    ``cache=True`` decodes every image once, at construction, runs the deterministic head of ``transform``
    (:func:`~visionlab.data.transforms.split_deterministic`: the evaluation resize + centre crop; nothing beyond
    ``RGB`` for the training recipe, whose resize draws its interpolation at random) and keeps the results in one
    ``uint8`` tensor (:class:`~visionlab.data.decode.ImageCache`); each item then runs only the rest of
    ``transform`` — the random augmentation — on the cached image. Items are the same as without the cache,
    random draws included. Memory: ``3 x H x W`` bytes an image, for MiniPlaces (128 px) 49 KB, so 4.9 GB for
    the 100k training images and 0.5 GB for the 10k validation images. Worth it when that fits in memory
    beside the training with room to spare and decoding is a visible part of an epoch (few cores, a small
    model, many epochs); not for datasets of large images, which the training recipe caches at full size. The
    cache is built in this process before any DataLoader worker starts, and workers started by ``fork`` share
    it without copying. Assigning another ``transform`` rebuilds it.
    """

    def __init__(
        self,
        entries: Sequence[ListEntry],
        transform: Transform,
        *,
        cache: bool = False,
        cache_workers: int | None = None,
    ) -> None:
        self.entries = list(entries)
        self.cache_workers = cache_workers or min(8, os.cpu_count() or 1)  # threads decoding into the cache
        self._cache: ImageCache | None = None
        self._cache_enabled = cache
        self.transform = transform

    @property
    def transform(self) -> Transform:
        return self._transform

    @transform.setter
    def transform(self, transform: Transform) -> None:
        self._transform = transform
        self._prepare, self._augment = split_deterministic(transform)
        if self._cache_enabled:
            self._cache = None  # the old one is freed before the new one is built
            kinds: set[type] = set()

            def load(index: int) -> torch.Tensor:
                image = self._prepare(self._decode(index))
                kinds.add(type(image))
                return image.as_subclass(torch.Tensor)

            self._cache = ImageCache.build(len(self.entries), load, workers=self.cache_workers)
            # Hand the augmentation what ``prepare`` gave (a tv_tensors.Image after ToImage), as without the cache.
            self._cached_type = kinds.pop() if len(kinds) == 1 else torch.Tensor

    @property
    def cache(self) -> ImageCache | None:
        """The decoded images (None when ``cache`` is off)."""
        return self._cache

    @property
    def augmentation(self) -> Transform:
        """What ``transform`` runs after its deterministic head: the random augmentation, the part each item
        draws afresh (:func:`~visionlab.data.transforms.split_deterministic`)."""
        return self._augment

    def prepared(self, index: int) -> torch.Tensor:
        """Image ``index`` decoded and through the deterministic head of ``transform`` (from the cache when there
        is one): a ``uint8`` tensor ``(C, H, W)``, what :attr:`augmentation` receives."""
        if self._cache is not None:
            return self._cache[index]
        return self._prepare(self._decode(index)).as_subclass(torch.Tensor)

    def place_cache(self, where: str | torch.device) -> None:
        """Move the cache to pinned host memory (``"pinned"``) or a device (:meth:`ImageCache.placed`), for the
        device-side augmentation, which gathers its batches from it; the host copy is freed. Items read on the
        CPU (``dataset[i]``) need the cache in host memory."""
        if self._cache is None:
            raise ValueError("no cache to place: build the dataset with cache=True")
        self._cache = self._cache.placed(where)

    def __len__(self) -> int:
        return len(self.entries)

    def _decode(self, index: int) -> torch.Tensor:
        entry = self.entries[index]
        try:
            return read_image(entry.path)
        except ImageDecodeError as exc:
            raise DatasetError(f"{entry.source}: cannot decode image {entry.path} ({exc})") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._cache is not None:
            return self._augment(self._cache[index].as_subclass(self._cached_type)), self.entries[index].label
        return self.transform(self._decode(index)), self.entries[index].label


# --------------------------------------------------------------------------------------------- readers
def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into a ``uint8`` tensor of its stored shape."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX element type 0x{data[2]:02x} unsupported (only unsigned byte 0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)  # 1 for a 0-dimensional array: one element
    if len(data) - header != expected:
        raise DatasetError(f"{path}: IDX header says shape {shape} ({expected} bytes) but holds {len(data) - header}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def _check_image(entry: ListEntry) -> str | None:
    try:
        with Image.open(entry.path) as img:
            img.verify()
        # verify() checks almost nothing in a JPEG: a truncated file passes it, so also decode, at 1/8 scale
        # for JPEG (draft), which still reads every entropy-coded byte.
        with Image.open(entry.path) as img:
            img.draft("RGB", (1, 1))
            img.load()
    except Exception as exc:  # PIL raises many types for corrupt data
        return f"{entry.source}: unreadable or corrupt image {entry.path} ({exc.__class__.__name__}: {exc})"
    return None


def verify_images(entries: Sequence[ListEntry], workers: int = 8) -> None:
    """Open every image, check its structure (PIL ``verify``: header and chunk checksums) and decode it (JPEG at
    1/8 scale) so a corrupt or truncated file is reported, with its list line, before the first training step."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for problem in pool.map(_check_image, entries, chunksize=64):
            if problem is not None:
                raise DatasetError(problem)


CIFAR10_CLASSES = 10


def read_cifar10(
    root: str | Path,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], list[str]]:
    """Read CIFAR-10 python batches: ``((train_x, train_y), (test_x, test_y), class_names)``, images as
    ``uint8 (N, 3, 32, 32)``. Every batch is checked (:func:`_cifar_batch`); ``batches.meta``, when present, must
    name the 10 classes (without it they are numbered)."""
    root = Path(root)

    def split(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [_cifar_batch(root / name, _load_cifar_pickle(root / name)) for name in names]
        images, labels = (np.concatenate([batch[k] for batch in batches]) for k in (0, 1))
        return torch.from_numpy(images), torch.from_numpy(labels)

    return split([f"data_batch_{i}" for i in range(1, 6)]), split(["test_batch"]), _cifar_names(root / "batches.meta")


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR-10 python batch holds: dicts, lists, bytes, numbers and numpy
    arrays. A pickle may name any importable callable and have it called while loading (``os.system`` included),
    so a downloaded or hand-placed batch that names anything else is refused instead of run."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),  # the official batches (pickled by numpy 1.x under Python 2)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 writes this name
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol 2's spelling of bytes
    })  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def _load_cifar_pickle(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: missing CIFAR-10 batch")
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except Exception as exc:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc


def _cifar_batch(path: Path, batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """One unpickled batch as ``(uint8 images (N, 3, 32, 32), int64 labels (N,))``. Refused, naming ``path``: not
    a dict of ``b'data'`` (N, 3072) and N ``b'labels'``, no images, pixels that are not integers in [0, 255] (any
    integer storage is taken; a cast would wrap 256 to 0 or cut 0.7 to 0), labels that are not integers in
    [0, 10) (a cast would cut 1.9 to 1)."""
    try:
        pixels = np.asarray(batch[b"data"]) if isinstance(batch, dict) and b"data" in batch else None
        labels = np.asarray(batch[b"labels"]) if isinstance(batch, dict) and b"labels" in batch else None
    except (ValueError, TypeError):  # a ragged list
        pixels = labels = None
    if pixels is None or labels is None or pixels.shape[1:] != (3072,) or labels.shape != pixels.shape[:1]:
        raise DatasetError(f"{path}: expected b'data' (N, 3072) uint8 and N b'labels'")
    if len(labels) == 0:
        raise DatasetError(f"{path}: the batch is empty")
    if pixels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: pixels must be integers in [0, 255], got {pixels.dtype}")
    if pixels.dtype != np.uint8 and (pixels.min() < 0 or pixels.max() > 255):
        raise DatasetError(f"{path}: pixels must be integers in [0, 255], got {pixels.min()} to {pixels.max()}")
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: labels must be integers, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= CIFAR10_CLASSES:
        raise DatasetError(f"{path}: label outside [0, {CIFAR10_CLASSES})")
    return pixels.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_names(path: Path) -> list[str]:
    """The class names ``batches.meta`` lists under ``b'label_names'`` (10 strings, bytes as Python 2 pickled
    them), or ``"0"``..``"9"`` when there is no such file or key."""
    if not path.is_file():
        return [str(i) for i in range(CIFAR10_CLASSES)]
    meta = _load_cifar_pickle(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else []
    if names is None:
        return [str(i) for i in range(CIFAR10_CLASSES)]
    if not isinstance(names, list | tuple) or len(names) != CIFAR10_CLASSES:
        raise DatasetError(f"{path}: expected b'label_names', a list of the {CIFAR10_CLASSES} class names")
    decoded = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]
    if not all(isinstance(n, str) for n in decoded):
        raise DatasetError(f"{path}: expected b'label_names', a list of the {CIFAR10_CLASSES} class names")
    return decoded


# --------------------------------------------------------------------------------------------- bundles
@dataclass
class DataBundle:
    """A dataset ready for the engine: splits of ``(float pixels in [0,1] (C, H, W), label)`` plus metadata."""

    kind: str
    root: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    recipe: str
    test: Dataset | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"kind:PATH"`` / ``"fashion-mnist"`` / bare ``PATH`` -> ``(kind, path)``; bare paths are detected."""
    if spec in FASHION_MNIST_ALIASES:
        return "fashion-mnist", ""
    for kind in DATASET_KINDS:
        if spec.startswith(kind + ":"):
            return kind, spec[len(kind) + 1 :]
    path = Path(spec)
    if not path.exists():
        raise DatasetError(
            f"dataset {spec!r}: no such directory (use fashion-mnist, miniplaces:PATH, folder:PATH or cifar10:PATH)"
        )
    if (path / "train.txt").is_file():
        return "miniplaces", spec
    if (path / "data_batch_1").is_file() or (path / "cifar-10-batches-py" / "data_batch_1").is_file():
        return "cifar10", spec
    if (path / "train").is_dir() and (path / "val").is_dir():
        return "folder", spec
    if (path / "train-images-idx3-ubyte.gz").is_file():
        return "fashion-mnist", spec
    raise DatasetError(
        f"{path}: cannot tell the dataset format (expected train.txt + val.txt [MiniPlaces], train/ + val/ "
        "class folders [ImageFolder], CIFAR-10 python batches, or Fashion-MNIST IDX files)"
    )


def _idx(path: Path, ndim: int) -> torch.Tensor:
    array = read_idx(path)
    if array.dim() != ndim:
        raise DatasetError(f"{path}: IDX array has {array.dim()} dimensions, expected {ndim}")
    return array


def _check_fashion_mnist(directory: Path, images: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    """One split's images ``(N, H, W)`` and labels ``(N,)``: as many of each, at least one, labels below 10 (the
    bytes are unsigned: none below 0), square images (the models take a square side)."""
    if len(images) != len(labels):
        raise DatasetError(
            f"{directory / f'{name}-labels-idx1-ubyte.gz'}: {len(labels)} labels but "
            f"{name}-images-idx3-ubyte.gz holds {len(images)} images"
        )
    if len(labels) == 0:
        raise DatasetError(f"{directory}: the {name} split is empty")
    if int(labels.max()) >= 10:
        raise DatasetError(f"{directory}/{name}-labels-idx1-ubyte.gz: label {int(labels.max())} outside [0, 10)")
    height, width = images.shape[1:]
    if height != width:
        raise DatasetError(f"{directory / f'{name}-images-idx3-ubyte.gz'}: images are {height}x{width}, not square")


def _fashion_mnist(path: str, data_root: Path | None) -> DataBundle:
    directory = Path(path) if path else fetch_fashion_mnist(data_root)
    x_train, y_train = (
        _idx(directory / "train-images-idx3-ubyte.gz", 3),
        _idx(directory / "train-labels-idx1-ubyte.gz", 1),
    )
    x_test, y_test = _idx(directory / "t10k-images-idx3-ubyte.gz", 3), _idx(directory / "t10k-labels-idx1-ubyte.gz", 1)
    _check_fashion_mnist(directory, x_train, y_train, "train")
    _check_fashion_mnist(directory, x_test, y_test, "t10k")
    if x_test.shape[1:] != x_train.shape[1:]:
        (h, w), (height, width) = x_test.shape[1:], x_train.shape[1:]
        raise DatasetError(
            f"{directory / 't10k-images-idx3-ubyte.gz'}: images are {h}x{w}, but train-images-idx3-ubyte.gz's are "
            f"{height}x{width}"
        )
    x_train, x_test = x_train.unsqueeze(1), x_test.unsqueeze(1)
    size = x_train.shape[-1]
    return DataBundle(
        kind="fashion-mnist", root=str(directory),
        train=TensorImageDataset(x_train, y_train, train_transform("flip", size), in_memory=True,
                                 batch_augment=BatchAugment(flip=True)),
        val=TensorImageDataset(x_test, y_test, to_float_transform(), in_memory=True),
        num_classes=10, in_channels=1, image_size=size, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD,
        class_names=list(FASHION_MNIST_CLASSES), recipe="small",
    )  # fmt: skip


def _cifar10(path: str) -> DataBundle:
    root = Path(path)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    (x_train, y_train), (x_test, y_test), names = read_cifar10(root)
    return DataBundle(
        kind="cifar10", root=str(root),
        train=TensorImageDataset(x_train, y_train, train_transform("small", 32), in_memory=True,
                                 batch_augment=BatchAugment(flip=True, pad=max(1, 32 // 14))),
        val=TensorImageDataset(x_test, y_test, to_float_transform(), in_memory=True),
        num_classes=10, in_channels=3, image_size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
        class_names=names, recipe="small",
    )  # fmt: skip


def _miniplaces_class_names(root: Path, entries: Sequence[ListEntry]) -> list[str]:
    names = [""] * MINIPLACES_CLASSES
    categories = root / "categories.txt"
    if categories.is_file():
        for number, raw in enumerate(categories.read_text(encoding="utf-8").splitlines(), start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 2 or not LABEL_INTEGER.fullmatch(fields[1]):
                raise DatasetError(f"{categories}:{number}: expected '/a/abbey 0', got {raw.strip()!r}")
            label = int(fields[1])
            if not 0 <= label < MINIPLACES_CLASSES:
                raise DatasetError(f"{categories}:{number}: label {label} outside [0, {MINIPLACES_CLASSES})")
            names[label] = fields[0].strip("/").split("/", 1)[-1]  # /a/abbey, a/abbey, /abbey, abbey -> abbey
    else:  # the class folder of the train paths: train/a/abbey/00000001.jpg -> "abbey"
        for entry in entries:
            if not names[entry.label]:
                names[entry.label] = entry.path.parent.name
    return [name or str(i) for i, name in enumerate(names)]


def _miniplaces(path: str, image_size: int, check_images: bool, cache: bool) -> DataBundle:
    root = Path(path)
    images = root / "images"
    train = parse_list_file(root / "train.txt", images, MINIPLACES_CLASSES)
    val = parse_list_file(root / "val.txt", images, MINIPLACES_CLASSES)
    test_entries = None
    if (root / "test.txt").is_file():
        test_entries = parse_list_file(root / "test.txt", images, MINIPLACES_CLASSES, labeled=False)
    elif (images / "test").is_dir():
        test_entries = _folder_images(images / "test", -1)
    if check_images:
        verify_images(train + val + (test_entries or []))
    return DataBundle(
        kind="miniplaces", root=str(root),
        train=ImageListDataset(train, train_transform("miniplaces", image_size), cache=cache),
        val=ImageListDataset(val, eval_transform("miniplaces", image_size), cache=cache),
        test=ImageListDataset(test_entries, eval_transform("miniplaces", image_size)) if test_entries else None,
        num_classes=MINIPLACES_CLASSES, in_channels=3, image_size=image_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, class_names=_miniplaces_class_names(root, train),
        recipe="miniplaces",
    )  # fmt: skip


def _folder_images(directory: Path, label: int) -> list[ListEntry]:
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [ListEntry(p, label, str(p)) for p in files]


def _folder(path: str, image_size: int, check_images: bool, cache: bool) -> DataBundle:
    root = Path(path)
    splits = {}
    classes: list[str] | None = None
    for split in ("train", "val"):
        directory = root / split
        if not directory.is_dir():
            raise DatasetError(f"{directory}: missing (ImageFolder layout needs train/ and val/ class folders)")
        found = sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise DatasetError(f"{directory}: no class folders")
        if classes is None:
            classes = found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DatasetError(f"{directory}: class folders {unknown} do not exist in {root / 'train'}")
        entries = [e for i, c in enumerate(classes) for e in _folder_images(directory / c, i)]
        if not entries:
            raise DatasetError(f"{directory}: the split is empty")
        splits[split] = entries
    assert classes is not None
    if check_images:
        verify_images(splits["train"] + splits["val"])
    return DataBundle(
        kind="folder", root=str(root),
        train=ImageListDataset(splits["train"], train_transform("miniplaces", image_size), cache=cache),
        val=ImageListDataset(splits["val"], eval_transform("miniplaces", image_size), cache=cache),
        num_classes=len(classes), in_channels=3, image_size=image_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, class_names=classes, recipe="miniplaces",
    )  # fmt: skip


def load_dataset(
    spec: str,
    *,
    data_root: str | Path | None = None,
    image_size: int | None = None,
    check_images: bool = True,
    cache: bool = False,
) -> DataBundle:
    """Load the dataset a spec string names (see the module docstring), validated.

    Args:
        spec: ``fashion-mnist`` | ``miniplaces:PATH`` | ``folder:PATH`` | ``cifar10:PATH`` | ``PATH``.
        data_root: where ``fashion-mnist`` lives / is fetched to (default ``$VISIONLAB_DATA`` or ``./data``).
        image_size: model input side for file-based datasets (default :data:`~visionlab.data.kinds.DEFAULT_IMAGE_SIZE`,
            128); fixed by the data otherwise (:func:`~visionlab.data.kinds.fixed_image_size`).
        check_images: verify every image file before training (PIL ``verify`` + a 1/8-scale JPEG decode; about
            1 s per 10k 128-px JPEGs on one core).
        cache: file-based datasets (MiniPlaces, ImageFolder) decode their train and val images once, here, and keep
            them in memory (:class:`ImageListDataset`; MiniPlaces: about 4.9 GB for train, 0.5 GB for val), so
            each epoch runs only the random augmentation. Same items as without it. The test split, read only by
            ``predict``, is not cached; the other formats are held in memory anyway.
    """
    kind, path = parse_spec(spec)
    if path and not Path(path).is_dir():  # said here, not as the first file the reader misses inside it
        what = "not a directory" if Path(path).exists() else "no such directory"
        raise DatasetError(f"dataset {spec!r}: {path}: {what}")
    root = Path(data_root) if data_root is not None else default_data_root()
    if kind == "fashion-mnist":
        bundle = _fashion_mnist(path, root)
    elif kind == "cifar10":
        bundle = _cifar10(path)
    elif kind == "miniplaces":
        bundle = _miniplaces(path, image_size or DEFAULT_IMAGE_SIZE, check_images, cache)
    else:
        bundle = _folder(path, image_size or DEFAULT_IMAGE_SIZE, check_images, cache)
    if image_size is not None and fixed_image_size(kind) is not None and image_size != bundle.image_size:
        size = bundle.image_size
        raise DatasetError(f"{kind} images are {size}x{size}: image size {image_size} requested (leave it unset)")
    return bundle
