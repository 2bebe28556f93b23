"""load_checkpoint on hostile and broken files: a file whose unpickling could run code is refused as what it is,
nothing in it runs, and no message suggests turning the ``weights_only`` protection off."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from visionlab.engine import CheckpointError, load_checkpoint, save_checkpoint

REFUSED = "not a plain visionlab checkpoint: refused because loading it could execute code"


class _RunsACommand:
    """Unpickling this calls ``os.system(command)``: the classic attack on ``torch.load``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _SomeClass:
    pass


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only" not in message and "trusted source" not in message  # no advice to disable it
    assert "\n" not in message
    return message


def test_a_pickled_os_system_call_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"model": {}, "config": {}, "x": _RunsACommand(f"touch {marker}")}, path)
    message = _refusal(path)
    assert message.startswith(f"{path}: {REFUSED}") and "system" in message
    assert "truncated" not in message and "corrupt" not in message
    assert not marker.exists()


def test_a_hand_written_global_opcode_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "raw.pth.tar"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # GLOBAL os.system, REDUCE
    assert _refusal(path) == (
        f"{path}: {REFUSED} (it references os.system); a visionlab checkpoint holds only tensors, numbers, "
        "strings, lists and dicts"
    )
    assert not marker.exists()


def test_an_inst_opcode_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "inst.pth.tar"
    command = f"touch {marker}".encode()
    # PROTO 2, MARK, BINUNICODE command, INST os.system, STOP
    path.write_bytes(b"\x80\x02(X" + struct.pack("<I", len(command)) + command + b"ios\nsystem\n.")
    assert "it uses the pickle opcode INST" in _refusal(path)
    assert not marker.exists()


def test_an_arbitrary_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.pth.tar"
    torch.save({"model": {}, "config": {}, "x": _SomeClass()}, path)
    message = _refusal(path)
    assert REFUSED in message and "_SomeClass" in message


def _zip_with_truncated_pickle(tmp_path: Path) -> Path:
    good = tmp_path / "good.pth.tar"
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, good)
    out = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:10] if name.endswith("data.pkl") else data)
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("kind", ["random bytes", "empty", "half a zip", "truncated pickle"])
def test_broken_files_are_called_truncated_or_corrupt(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.pth.tar"
    if kind == "random bytes":
        path.write_bytes(bytes(range(48, 248)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "half a zip":
        save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path = _zip_with_truncated_pickle(tmp_path)
    message = _refusal(path)
    assert message.startswith(f"{path}: truncated or corrupt checkpoint (")
    assert "execute code" not in message
