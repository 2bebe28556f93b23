"""The dataset kinds, in one table: how each is stored and whether its images have a fixed size.

Everything that needs to know about a kind (the spec parser, ``load_dataset``, the configuration's image-size
check, the command line's data flags) reads it here, so adding a kind is one row. This module imports nothing
from the package, so any floor above ``data`` may read it without pulling in the readers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATASET_KINDS",
    "DEFAULT_IMAGE_SIZE",
    "FASHION_MNIST_ALIASES",
    "FILE_KINDS",
    "IN_MEMORY_KINDS",
    "DatasetKind",
    "fixed_image_size",
]

# The model input side of a file dataset when none is given: MiniPlaces' own 128x128 JPEGs.
DEFAULT_IMAGE_SIZE = 128


@dataclass(frozen=True)
class DatasetKind:
    """One dataset kind.

    Args:
        name: the spec prefix (``name:PATH``) and ``DataBundle.kind``.
        in_memory: the whole dataset is held in memory as uint8 arrays and batched in the training process itself
            (no DataLoader workers); otherwise its images are files, decoded (at the model's input size) by
            loader workers.
        image_size: the side of its (square) images when the data fixes it, ``None`` when the images are decoded
            at a chosen size (default :data:`DEFAULT_IMAGE_SIZE`).
        in_channels: its image channels when the data fixes them, ``None`` when they depend on the files.
        aliases: other spec strings that name this kind (without a path).
    """

    name: str
    in_memory: bool
    image_size: int | None
    in_channels: int | None
    aliases: tuple[str, ...] = ()


# In the order a ``kind:PATH`` spec prefix is tried.
DATASET_KINDS: dict[str, DatasetKind] = {
    kind.name: kind
    for kind in (
        DatasetKind("miniplaces", in_memory=False, image_size=None, in_channels=3),
        DatasetKind("folder", in_memory=False, image_size=None, in_channels=3),
        DatasetKind("cifar10", in_memory=True, image_size=32, in_channels=3),
        DatasetKind("fashion-mnist", in_memory=True, image_size=28, in_channels=1,
                    aliases=("fashionmnist", "fmnist")),
    )
}  # fmt: skip

# Kinds whose images are files decoded at the model's input size, and kinds held in memory.
FILE_KINDS = tuple(name for name, kind in DATASET_KINDS.items() if not kind.in_memory)
IN_MEMORY_KINDS = tuple(name for name, kind in DATASET_KINDS.items() if kind.in_memory)
# The specs that name Fashion-MNIST in the data root (every other spec names its own folder).
FASHION_MNIST_ALIASES = ("fashion-mnist", *DATASET_KINDS["fashion-mnist"].aliases)


def fixed_image_size(kind: str) -> int | None:
    """The fixed image side of the dataset kind ``kind`` (a name or an alias), ``None`` when it has none or
    ``kind`` is not a kind."""
    for entry in DATASET_KINDS.values():
        if kind == entry.name or kind in entry.aliases:
            return entry.image_size
    return None
