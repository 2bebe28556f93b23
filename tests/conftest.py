"""Shared fixtures: tiny datasets in the real on-disk formats."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from visionlab.engine import ClassificationTask


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file, the Fashion-MNIST on-disk format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, n_train: int = 96, n_test: int = 48, seed: int = 0) -> Path:
    """Fashion-MNIST-format IDX files whose class is visible in the pixels (a bright row at 2*label), so a
    model can learn it within a few steps."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4, :] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> str:
    """A dataset spec for a tiny Fashion-MNIST-format directory (96 train / 48 test images)."""
    return f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fmnist')}"


class Stop(Exception):
    """Raised by :class:`StopAt`: a run killed in the middle of an epoch."""


class StopAt(ClassificationTask):
    """The plain objective, raising :class:`Stop` at its n-th call (1-based), like a kill mid-epoch."""

    def __init__(self, n: int) -> None:
        super().__init__(torch.nn.CrossEntropyLoss())
        self.n, self.calls = n, 0

    def __call__(self, model, images, target):
        self.calls += 1
        if self.calls == self.n:
            raise Stop
        return super().__call__(model, images, target)
