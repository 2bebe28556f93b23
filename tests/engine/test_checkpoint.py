from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.engine import CheckpointError, load_checkpoint, save_checkpoint
from visionlab.engine import checkpoint as checkpoint_module
from visionlab.engine.checkpoint import capture_rng, restore_rng


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "config": {"lr": value}, "epoch": 1}


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    save_checkpoint(_state(2.0), tmp_path / "c.pth.tar")
    state = load_checkpoint(tmp_path / "c.pth.tar")
    assert torch.equal(state["model"]["w"], torch.full((3,), 2.0))
    assert state["config"] == {"lr": 2.0} and state["format"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth.tar"]  # no temporary file left behind


def test_truncated_file_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.pth.tar"
    save_checkpoint(_state(1.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pth\.tar: truncated or corrupt"):
        load_checkpoint(path)


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pth.tar"
    save_checkpoint(_state(1.0), path)

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(5.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth.tar"]


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth.tar")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a visionlab checkpoint"):
        load_checkpoint(tmp_path / "foreign.pth")


def test_rng_capture_restore_survives_weights_only_load(tmp_path: Path) -> None:
    import random

    import numpy as np

    gen = torch.Generator().manual_seed(3)
    save_checkpoint({"model": {}, "config": {}, "rng": capture_rng(gen)}, tmp_path / "r.pth.tar")
    expected = (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=gen))
    restore_rng(load_checkpoint(tmp_path / "r.pth.tar")["rng"], gen)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]
    assert torch.equal(torch.rand(2, generator=gen), expected[3])


def test_checkpoint_gets_a_normal_files_permissions(tmp_path: Path) -> None:
    """The atomic write goes through mkstemp (mode 0600); the checkpoint must end up as any file the user writes."""
    import os

    mask = os.umask(0o022)
    try:
        save_checkpoint({"model": {}, "config": {}}, tmp_path / "c.pth.tar")
    finally:
        os.umask(mask)
    assert (tmp_path / "c.pth.tar").stat().st_mode & 0o777 == 0o644
