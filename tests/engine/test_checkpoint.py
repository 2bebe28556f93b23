"""``engine/checkpoint.py``: one owner of the checkpoint schema. The atomic write and its permissions, the
``weights_only`` load and every way it refuses a file (each message whole), the random states captured and
restored, and a model rebuilt from a checkpoint's stored arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.engine import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
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


def test_save_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.pth.tar"
    save_checkpoint(_state(3.0), str(path))
    assert load_checkpoint(str(path))["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pth.tar"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {}}, "not a visionlab checkpoint (no 'model'/'config' entries)"),
        ({"config": {}}, "not a visionlab checkpoint"),
        ([1, 2], "not a visionlab checkpoint"),
    ],
)
def test_a_file_without_model_and_config_is_not_a_checkpoint(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "x.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: {message}" or str(info.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(("fmt", "shown"), [(2, "2"), (None, "None"), ("1", "'1'")])
def test_another_format_version_is_refused(tmp_path: Path, fmt, shown: str) -> None:
    path = tmp_path / "c.pth.tar"
    content = {"model": {}, "config": {}} if fmt is None else {"format": fmt, "model": {}, "config": {}}
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: checkpoint format {shown}, expected 1"


def test_load_maps_tensors_to_the_requested_device(tmp_path: Path) -> None:
    path = tmp_path / "c.pth.tar"
    save_checkpoint(_state(1.0), path)
    assert load_checkpoint(path)["model"]["w"].device.type == "cpu"
    assert load_checkpoint(path, map_location="meta")["model"]["w"].device.type == "meta"


def test_an_unreadable_file_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    path = tmp_path / "c.pth.tar"
    save_checkpoint(_state(1.0), path)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint_module.torch, "load", refuse)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: cannot read the checkpoint (Permission denied)"
    monkeypatch.setattr(checkpoint_module.torch, "load", lambda *a, **k: (_ for _ in ()).throw(OSError("no detail")))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: cannot read the checkpoint (no detail)"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("Bad thing. Try turning it off.\nMore advice"), "ValueError: Bad thing"),
        (RuntimeError("one line only."), "RuntimeError: one line only"),
        (KeyError(), "KeyError"),
        (ValueError("first line\nsecond. third\nfourth"), "ValueError: first line"),  # no '. ' in the first line
        (ValueError("One. Two. Three"), "ValueError: One"),
        (ValueError("stuck in FOX."), "ValueError: stuck in FOX"),  # only the full stop goes
        (__import__("struct").error("unpack requires a buffer"), "struct.error: unpack requires a buffer"),
        (__import__("zlib").error("bad data. more"), "zlib.error: bad data"),
    ],
)
def test_first_sentence_of_an_exception(exc: BaseException, expected: str) -> None:
    assert checkpoint_module._first_sentence(exc) == expected


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Weights only load failed. Unsupported global: GLOBAL os.system was not allowed", "references os.system"),
        ("Weights only load failed. Unsupported operand 111", "opcode OBJ"),  # 'o'
        ("Weights only load failed. Unsupported operand 99", "opcode GLOBAL"),  # 'c'
        ("Weights only load failed. Unsupported operand 82", "opcode REDUCE"),  # 'R'
        ("Weights only load failed. Trying to call reduce for x", "constructs objects other than tensors"),
        ("Weights only load failed. Cannot create new object", "constructs objects other than tensors"),
        ("Weights only load failed. Can only build Tensor", "constructs objects other than tensors"),
    ],
)  # fmt: skip
def test_unpickling_refusals_name_what_was_refused(text: str, what: str) -> None:
    import pickle

    message = str(checkpoint_module._unpickling_error(Path("c.pth"), pickle.UnpicklingError(text)))
    assert message.startswith("c.pth: not a plain visionlab checkpoint: refused because loading it could execute")
    assert f"(it {what});" in message or f"(it uses the pickle {what});" in message


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("Weights only load failed. Unsupported operand 200", "unreadable pickle data"),
        ("Weights only load failed. Something else", "unreadable pickle data"),
        ("invalid load key, 'x'. More text", "UnpicklingError: invalid load key, 'x'"),
    ],
)
def test_other_unpickling_errors_are_corruption(text: str, detail: str) -> None:
    import pickle

    message = str(checkpoint_module._unpickling_error(Path("c.pth"), pickle.UnpicklingError(text)))
    assert message == f"c.pth: truncated or corrupt checkpoint ({detail})"


def test_captured_rng_state_has_exactly_the_states_asked_for() -> None:
    state = capture_rng()
    cuda = {"cuda"} if torch.cuda.is_available() else set()
    assert set(state) == {"torch", "python", "python_version", "numpy"} | cuda
    assert "loader" in capture_rng(torch.Generator())
    restore_rng(state)  # without a loader generator: restores the rest
    restore_rng({**state, "loader": torch.Generator().get_state()})  # a stored loader state but no generator: skipped


def test_rng_round_trip_keeps_pythons_pending_gaussian() -> None:
    """Python's state ends with the second normal of the last pair drawn (``gauss_next``), which the next
    ``random.gauss`` returns."""
    import random

    random.gauss(0.0, 1.0)  # draws a pair, keeps the second
    state = capture_rng()
    assert state["numpy"][1].dtype == torch.int64  # the Mersenne Twister keys, exact
    expected = (random.gauss(0.0, 1.0), random.random())
    restore_rng(state)
    assert (random.gauss(0.0, 1.0), random.random()) == expected


def test_cuda_generators_are_captured_and_restored_only_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch, on a CPU: ``torch.cuda`` stubbed."""
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0-state"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(states))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    state = capture_rng()
    assert state["cuda"] == ["gpu0-state"]
    restore_rng(state)
    assert calls == [["gpu0-state"]]
    restore_rng({k: v for k, v in state.items() if k != "cuda"})  # a CPU run's checkpoint on a GPU machine
    assert calls == [["gpu0-state"]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "cuda" not in capture_rng()
    restore_rng(state)  # a GPU run's checkpoint on a CPU machine: the CUDA states are skipped
    assert calls == [["gpu0-state"]]


def test_the_temporary_file_is_a_hidden_sibling_renamed_over_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic only within one directory (one file system): the temporary file lies next to the target, hidden and
    named after it, so a crash's leftover is recognisable."""
    import os

    renames = []
    real = os.replace
    monkeypatch.setattr(checkpoint_module.os, "replace", lambda src, dst: renames.append((src, dst)) or real(src, dst))
    save_checkpoint(_state(1.0), tmp_path / "c.pth.tar")
    ((src, dst),) = renames
    src = Path(src)
    assert src.parent == tmp_path and Path(dst) == tmp_path / "c.pth.tar"
    assert src.name.startswith(".c.pth.tar.") and src.name.endswith(".tmp")


def test_a_parser_failure_is_reported_with_its_type_and_first_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pth.tar"
    save_checkpoint(_state(1.0), path)

    def fail(*args, **kwargs):
        raise ValueError("bad header. Please try again with weights_only=False")

    monkeypatch.setattr(checkpoint_module.torch, "load", fail)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: truncated or corrupt checkpoint (ValueError: bad header)"


def test_model_from_checkpoint_rebuilds_and_wraps_bad_arguments(tmp_path: Path) -> None:
    from visionlab.models import build_model

    args = dict(name="simplenet", num_classes=3, in_channels=1, image_size=28)
    model = build_model(**{k: v for k, v in args.items() if k != "name"}, name="simplenet")
    state = {"model_args": args, "model": model.state_dict()}
    rebuilt = model_from_checkpoint(state, device="meta")
    assert next(rebuilt.parameters()).device.type == "meta"
    cpu = model_from_checkpoint(state)
    for a, b in zip(model.state_dict().values(), cpu.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert state["model_args"]["name"] == "simplenet"  # the stored arguments are not consumed
    bad = {"model_args": {**args, "num_classes": 4}, "model": model.state_dict()}
    with pytest.raises(
        CheckpointError, match=r"^the checkpoint's model cannot be rebuilt from its stored arguments \("
    ):
        model_from_checkpoint(bad)
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        model_from_checkpoint({"model_args": {**args, "name": "nonet"}, "model": {}})
