"""Builders shared by the command-line tests (tests/cli): parsed command lines, SimpleNet checkpoints (as a dict
for the train and eval tests, saved over a tiny Fashion-MNIST-format set for the analysis commands), stand-in
validation splits, and readers of what the analysis commands write (PNG grids, TensorBoard image tags, the labels
of a loader's batches). Plain helpers, imported by the test modules; the fixtures (``three_workers``, ``ckpt``) are
in conftest.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from visionlab.cli import build_parser
from visionlab.engine import TrainConfig, save_checkpoint
from visionlab.explain import save_grid
from visionlab.models import build_model

from ..conftest import make_fashion_mnist

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# The end of the refusal of -j for a dataset held in memory (train, eval).
IN_MEMORY = "is held in memory and batched without worker processes (leave -j unset)"


def parse_argv(*argv: str) -> argparse.Namespace:
    """``visionlab``'s parser applied to ``argv``."""
    return build_parser().parse_args(list(argv))


def model_state(
    *, optimizer: bool = False, conv: str = "native", image_size: int = 28, in_channels: int = 1, **config: Any
) -> dict[str, Any]:
    """A simplenet checkpoint's dict (model_best without ``optimizer``, checkpoint.pth.tar with it); ``config``
    overrides fields of the default :class:`TrainConfig`."""
    args = dict(name="simplenet", num_classes=10, in_channels=in_channels, image_size=image_size,
                mean=[0.5] * in_channels, std=[0.25] * in_channels, conv=conv)  # fmt: skip
    state = {"model": build_model(**args).state_dict(), "config": {**TrainConfig().to_dict(), **config},
             "model_args": args, "recipe": "small", "epoch": 1, "step": 4, "best_top1": 10.0}  # fmt: skip
    if optimizer:
        state["optimizer"] = {}
    return state


def save_state(state: dict[str, Any], path: Path) -> Path:
    """``state`` saved as a checkpoint file at ``path``; returns ``path``."""
    save_checkpoint(state, path)
    return path


class ValSplit(list):
    """A validation split of seven items with a settable transform."""

    transform: Any = None


def val_bundle(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> SimpleNamespace:
    """A stand-in for a loaded dataset: its sizes and a :class:`ValSplit` of seven items."""
    val = ValSplit(range(7))
    return SimpleNamespace(num_classes=num_classes, in_channels=in_channels, image_size=image_size, val=val)


def tiny_checkpoint(root: Path, n_test: int = 24, run: str = "run") -> Path:
    """A SimpleNet checkpoint (weights only, as model_best) whose config names a tiny Fashion-MNIST-format set."""
    fm = root / "fm"
    if not fm.exists():
        make_fashion_mnist(fm, n_train=4, n_test=n_test)
    torch.manual_seed(0)
    args = dict(name="simplenet", num_classes=10, in_channels=1, image_size=28, mean=[0.5], std=[0.25],
                conv="native")  # fmt: skip
    model = build_model(**args)
    path = root / run / "model_best.pth.tar"
    save_checkpoint(
        {"model": model.state_dict(), "config": TrainConfig(data=f"fashion-mnist:{fm}").to_dict(), "model_args": args,
         "recipe": "small", "epoch": 0, "step": 0, "best_top1": 0.0},
        path,
    )  # fmt: skip
    return path


def checkpoint_model(ckpt: Path) -> torch.nn.Module:
    """The model of a :func:`tiny_checkpoint`, in eval mode."""
    from visionlab.engine import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(ckpt)).eval()


def checkpoint_val(ckpt: Path) -> Any:
    """The validation split of a :func:`tiny_checkpoint`'s dataset."""
    from visionlab.data import load_dataset

    return load_dataset(f"fashion-mnist:{ckpt.parent.parent / 'fm'}").val


def val_labels(ckpt: Path, n: int) -> list[int]:
    """The labels of the first ``n`` images of a :func:`tiny_checkpoint`'s validation split."""
    val = checkpoint_val(ckpt)
    return [int(val[i][1]) for i in range(n)]


def pixels(path: Path) -> np.ndarray:
    """An image file's RGB pixels, ``(H, W, 3)`` uint8."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def same_png(path: Path, images: torch.Tensor, tmp_path: Path) -> None:
    """``path`` holds exactly the grid ``save_grid`` draws of ``images``."""
    expected = save_grid(images, tmp_path / "expected" / path.name)
    np.testing.assert_array_equal(pixels(path), pixels(expected))


def image_tags(directory: Path) -> dict[str, tuple[int, int]]:
    """``{tag: (width, height)}`` of the images TensorBoard logged in ``directory``."""
    events = EventAccumulator(str(directory))
    events.Reload()
    return {t: (events.Images(t)[0].width, events.Images(t)[0].height) for t in events.Tags()["images"]}


def constant_items(n: int, side: int = 4) -> list[tuple[torch.Tensor, int]]:
    """``n`` distinct one-channel images (each a constant i / n) labelled ``i % 10`` (numpy ints, as datasets do)."""
    return [(torch.full((1, side, side), i / n), np.int64(i % 10)) for i in range(n)]


def batch_labels(loader: Any) -> list[list[int]]:
    """The labels of each batch of ``loader``, in order."""
    return [y.tolist() for _, y in loader]
