"""The helpers the analysis commands share (:mod:`visionlab.cli.analysis`): the loader of the first ``--limit-val``
images (sharded under torchrun), the first images of a split, the output folder, the TensorBoard grids and the
JSON files, each compared exactly."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

import visionlab.runtime.distributed as distributed
from visionlab.cli import analysis as cli_analysis
from visionlab.runtime.distributed import DistContext

from .builders import (
    batch_labels,
    constant_items,
    image_tags,
)


def test_loader_takes_the_first_items_in_order_in_batches_of_the_batch_size() -> None:
    """``_loader``: the first ``limit`` items (all when unset or larger), unshuffled, ``--batch-size`` each."""
    data = constant_items(7)
    args = argparse.Namespace(batch_size=3)
    assert batch_labels(cli_analysis._loader(data, args, None)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batch_labels(cli_analysis._loader(data, args, 5)) == [[0, 1, 2], [3, 4]]
    assert batch_labels(cli_analysis._loader(data, args, 7)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batch_labels(cli_analysis._loader(data, args, 9)) == [[0, 1, 2], [3, 4, 5], [6]]
    images = torch.cat([x for x, _ in cli_analysis._loader(data, args, 4)])
    assert torch.equal(images, torch.stack([x for x, _ in data[:4]]))


def test_loader_shards_the_limited_items_over_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun a rank evaluates items ``rank, rank + world, ...`` of the limited set."""
    data = constant_items(16)
    monkeypatch.setattr(distributed, "current_context", lambda: DistContext(rank=1, world_size=3))
    loader = cli_analysis._loader(data, argparse.Namespace(batch_size=2), 9)
    assert batch_labels(loader) == [[1, 4], [7]]


def test_first_stacks_the_first_n_images_and_their_integer_labels() -> None:
    """``_first``: at most ``n`` items, the images stacked and the labels an int64 tensor."""
    data = constant_items(5)
    images, labels = cli_analysis._first(data, 3)
    assert torch.equal(images, torch.stack([x for x, _ in data[:3]]))
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2]
    images, labels = cli_analysis._first(data, 9)
    assert images.shape == (5, 1, 4, 4) and labels.tolist() == [0, 1, 2, 3, 4]


def test_out_dir_is_out_or_beside_the_checkpoint_and_is_created(tmp_path: Path) -> None:
    """``--out`` (made with its parents, again without error), else ``CKPT_DIR/NAME``."""
    out = tmp_path / "a" / "b"
    args = argparse.Namespace(out=str(out))
    assert cli_analysis._out_dir(args, "unused/ckpt.pth", "attack") == out and out.is_dir()
    assert cli_analysis._out_dir(args, "unused/ckpt.pth", "attack") == out
    resume = tmp_path / "x" / "y" / "ckpt.pth"
    got = cli_analysis._out_dir(argparse.Namespace(out=None), str(resume), "saliency")
    assert got == tmp_path / "x" / "y" / "saliency" and got.is_dir()
    assert cli_analysis._out_dir(argparse.Namespace(out=""), str(resume), "attack") == tmp_path / "x" / "y" / "attack"


def test_tensorboard_logs_every_tag_as_a_grid_in_out_tensorboard(tmp_path: Path) -> None:
    """``_tensorboard`` writes each ``{tag: images}`` grid under ``OUT/tensorboard`` and closes the file."""
    cli_analysis._tensorboard(tmp_path, {"a/one": torch.zeros(3, 1, 4, 4), "b/two": torch.ones(12, 3, 4, 4)})
    assert [p.name for p in tmp_path.iterdir()] == ["tensorboard"]
    assert image_tags(tmp_path / "tensorboard") == {"a/one": (3 * 6 + 2, 6 + 2), "b/two": (10 * 6 + 2, 2 * 6 + 2)}


def test_write_json_writes_indented_json_and_a_newline(tmp_path: Path) -> None:
    """``_write_json``: ``json.dumps(indent=1)`` plus a newline, UTF-8; returns the path."""
    path = tmp_path / "v.json"
    assert cli_analysis._write_json({"a": [1, 2], "é": "ε"}, path) == path
    assert path.read_bytes() == b'{\n "a": [\n  1,\n  2\n ],\n "\\u00e9": "\\u03b5"\n}\n'
