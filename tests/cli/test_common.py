"""The helpers every command shares (:mod:`visionlab.cli.common`): reading a model checkpoint, checking options,
loading the evaluation data as the checkpoint stored it (with stand-in datasets), and formatting a user error;
every message compared whole."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from visionlab import cli
from visionlab.cli import CLIError, common
from visionlab.errors import CheckpointError, ConfigError, DatasetError

from .builders import IN_MEMORY, model_state, parse_argv, save_state, val_bundle


@pytest.mark.parametrize(
    "model_args",
    [None, "simplenet", {"name": "simplenet", "num_classes": 10, "in_channels": 1}],
    ids=["missing", "not a dict", "no image_size"],
)
def test_a_checkpoint_without_a_whole_architecture_is_refused(model_args: Any, tmp_path: Path) -> None:
    """model_args must be a dict naming name, num_classes, in_channels and image_size."""
    state = {"model": {}, "config": {}}
    if model_args is not None:
        state["model_args"] = model_args
    path = save_state(state, tmp_path / "w.pth.tar")
    with pytest.raises(CheckpointError) as caught:
        common.load_model_checkpoint(str(path))
    assert str(caught.value) == f"{path}: no model architecture stored (model_args); not a visionlab model checkpoint"


def test_a_checkpoint_with_exactly_the_four_architecture_keys_is_accepted(tmp_path: Path) -> None:
    """name, num_classes, in_channels and image_size are enough: nothing else is required."""
    args = {"name": "simplenet", "num_classes": 2, "in_channels": 1, "image_size": 28}
    path = save_state({"model": {}, "config": {}, "model_args": args}, tmp_path / "m.pth.tar")
    assert common.load_model_checkpoint(str(path))["model_args"] == args


def test_check_options_reads_an_unset_device_as_auto() -> None:
    """--device unset is auto; another option unset is checked as None (and refused when it may not be)."""
    common.check_options(argparse.Namespace(device=None, limit_val=None, batch_size=3), "device", "limit_val")
    with pytest.raises(ConfigError) as caught:
        common.check_options(argparse.Namespace(device=None, batch_size=None), "device", "batch_size")
    assert caught.value.field == "batch_size"
    with pytest.raises(ConfigError) as caught:
        common.check_options(argparse.Namespace(device="tpu"), "device")
    assert caught.value.field == "device"


def test_eval_data_loads_the_checkpoints_dataset_as_stored(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """No --data: the stored spec and data root; --data and --data-root win; image size only for file kinds."""
    calls: list[tuple[str, dict[str, Any]]] = []
    bundle = val_bundle()
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: calls.append((data, kw)) or bundle)
    state = model_state(data="fashion-mnist", data_root="/stored")
    args = parse_argv("eval", "--resume", "m.pth")
    assert common.eval_data(state, args) is bundle and bundle.val.transform is None
    assert calls.pop() == ("fashion-mnist", dict(data_root="/stored", image_size=None, check_images=True))
    args = parse_argv("eval", "--resume", "m", "--data", "folder:/f", "--no-check-images")
    common.eval_data(state, args)
    assert calls.pop() == ("folder:/f", dict(data_root="/stored", image_size=28, check_images=False))
    common.eval_data(state, parse_argv("eval", "--resume", "m", "--data", "fmnist", "--data-root", "/r"))
    assert calls.pop() == ("fmnist", dict(data_root="/r", image_size=None, check_images=True))
    assert capsys.readouterr().err == ""
    common.eval_data(model_state(data="miniplaces:/m", image_size=64), parse_argv("eval", "--resume", "m"))
    assert calls.pop()[1]["image_size"] == 64


def test_eval_data_refuses_data_flags_its_dataset_would_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-root for a spec with its own folder, -j N for data held in memory: refused before loading, unless
    ``strict`` is off (report: its flags apply to the runs that read them)."""
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: val_bundle())
    cases = [
        (model_state(data="folder:/f"), ["--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; folder:/f names its own folder"),
        (model_state(), ["--data", "miniplaces:/m", "--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; miniplaces:/m names its own folder"),
        (model_state(), ["-j", "1"], f"-j/--workers: fashion-mnist {IN_MEMORY}"),
        (model_state(data="cifar10:/c"), ["-j", "4"], f"-j/--workers: cifar10:/c {IN_MEMORY}"),
    ]  # fmt: skip
    for state, extra, message in cases:
        args = parse_argv("eval", "--resume", "m", *extra)
        with pytest.raises(CLIError) as caught:
            common.eval_data(state, args)
        assert str(caught.value) == message
        common.eval_data(state, args, strict=False)
    common.eval_data(model_state(data="folder:/f"), parse_argv("eval", "--resume", "m", "-j", "1"))
    common.eval_data(model_state(), parse_argv("eval", "--resume", "m", "-j", "0", "--data-root", "/r"))


def test_eval_data_converts_images_the_model_does_not_take(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Other channels or size: one note, whole, and the checkpoint's eval transform on the validation split."""
    bundle = val_bundle(in_channels=3, image_size=32)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: bundle)
    made: list[tuple[Any, ...]] = []
    monkeypatch.setattr("visionlab.data.eval_transform", lambda *a: made.append(a) or "T")
    state = model_state(data="fashion-mnist")
    del state["recipe"]
    common.eval_data(state, parse_argv("eval", "--resume", "m", "--data", "folder:/f"))
    assert capsys.readouterr().err == (
        "[visionlab] note: folder:/f has 3-channel 32x32 images, the checkpoint takes 1-channel 28x28: converting "
        "them (as predict does)\n"
    )
    assert bundle.val.transform == "T" and made == [("miniplaces", 28, 1)]
    bundle = val_bundle(in_channels=1, image_size=32)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: bundle)
    common.eval_data(model_state(), parse_argv("eval", "--resume", "m"))
    assert made[-1] == ("small", 28, 1) and bundle.val.transform == "T"
    assert "fashion-mnist has 1-channel 32x32 images, the checkpoint takes 1-channel 28x28" in capsys.readouterr().err


def test_eval_data_refuses_another_number_of_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classes cannot be converted: the message names the data, both counts and the checkpoint."""
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: val_bundle(num_classes=3))
    with pytest.raises(DatasetError) as caught:
        common.eval_data(model_state(), parse_argv("eval", "--resume", "ck.pth"))
    assert str(caught.value) == "fashion-mnist: 3 classes, but ck.pth predicts 10"


def test_format_user_error_keeps_a_worker_message_without_a_colon() -> None:
    """A DataLoader worker's re-raised error keeps only its last line's message; a last line without one keeps all."""
    text = "Caught X in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\nlast line\n"
    assert cli.format_user_error(DatasetError(text)) == text
    text = "Caught X.\nOriginal Traceback (most recent call last):\nDatasetError: a: b: c\n\n"
    assert cli.format_user_error(DatasetError(text)) == "a: b: c"
