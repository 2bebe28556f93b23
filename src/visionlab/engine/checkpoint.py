"""Checkpoints: one schema, one owner, atomic writes, ``weights_only`` loads.

Schema (every value is a tensor, number, string, list or dict, so ``torch.load(weights_only=True)`` accepts it)::

    {"format": 1, "model": state_dict, "config": TrainConfig as dict, "model_args": build_model kwargs,
     "epoch": last finished epoch (0-based), "step": global step, "best_top1": float,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": {...}}    # the last four: checkpoint.pth.tar only
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionlab.errors import CheckpointError, UserError
from visionlab.models import build_model

__all__ = [
    "BEST",
    "CHECKPOINT",
    "EMA",
    "SWA",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "model_from_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = 1
# A run directory's checkpoints: the last epoch (full, for an exact resume) and the best one (weights only).
CHECKPOINT, BEST = "checkpoint.pth.tar", "model_best.pth.tar"
EMA = "model_ema.pth.tar"  # the weight EMA (cfg.ema > 0) of its best epoch by the selection metric, as model_best
SWA = "model_swa.pth.tar"  # the SWA average (cfg.swa_start set) of its best epoch by the selection metric, likewise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same directory, fsync'd, then
    ``os.replace``d over the target. A crash at any moment leaves either the old or the new file, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; a checkpoint gets a normal file's mode
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` for a missing, unreadable, truncated or corrupt file, for a file holding
    anything but plain values (refused unread: unpickling it could execute code), and for a PyTorch file that
    is not a visionlab checkpoint. The messages never suggest turning the ``weights_only`` protection off.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from exc
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(path, exc) from None
    except Exception as exc:  # a parser of an untrusted file: whatever it raises, the file is at fault
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_sentence(exc)})") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a visionlab checkpoint (no 'model'/'config' entries)")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT}")
    return state


# Pickle opcodes that import or call something: what the weights_only unpickler exists to refuse.
_CODE_OPCODES = {ord(c): name for c, name in (
    ("c", "GLOBAL"), ("\x93", "STACK_GLOBAL"), ("i", "INST"), ("o", "OBJ"), ("R", "REDUCE"), ("b", "BUILD"),
    ("\x81", "NEWOBJ"), ("\x92", "NEWOBJ_EX"), ("\x82", "EXT1"), ("\x83", "EXT2"), ("\x84", "EXT4"),
)}  # fmt: skip


def _unpickling_error(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    """Tell a file refused for what it holds (a global such as ``os.system``, a call, a code-executing opcode)
    from one that is merely corrupt. PyTorch's own text (which suggests ``weights_only=False``, the one thing a
    user must not do with an untrusted file) is dropped; only the offending name is kept."""
    text = str(exc)
    name = re.search(r"GLOBAL ([\w.]+)", text)
    operand = re.search(r"Unsupported operand (\d+)", text)
    if name:
        what = f"it references {name.group(1)}"
    elif operand and int(operand.group(1)) in _CODE_OPCODES:
        what = f"it uses the pickle opcode {_CODE_OPCODES[int(operand.group(1))]}"
    elif re.search(r"call reduce for|create new object|Can only build", text):
        what = "it constructs objects other than tensors"
    else:
        detail = "unreadable pickle data" if "Weights only load failed" in text else _first_sentence(exc)
        return CheckpointError(f"{path}: truncated or corrupt checkpoint ({detail})")
    return CheckpointError(
        f"{path}: not a plain visionlab checkpoint: refused because loading it could execute code ({what}); "
        "a visionlab checkpoint holds only tensors, numbers, strings, lists and dicts"
    )


def _first_sentence(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception (PyTorch appends paragraphs of advice)."""
    text = str(exc).strip().split("\n", 1)[0]
    text = text.split(". ", 1)[0].rstrip(".")
    kind = exc.__class__.__name__
    kind = f"{exc.__class__.__module__}.{kind}" if kind == "error" else kind  # struct.error, zlib.error
    return f"{kind}: {text}" if text else kind


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state the training loop draws from, as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [*list(random.getstate()[1]), random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    internal = state["python"]
    random.setstate((state["python_version"], tuple(internal[:-1]), internal[-1]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def model_from_checkpoint(state: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model from the checkpoint's stored arguments and load its weights."""
    args = dict(state["model_args"])
    try:
        model = build_model(args.pop("name"), **args)
        model.load_state_dict(state["model"])
    except (UserError, RuntimeError, ValueError, TypeError) as exc:  # the checkpoint's values, not our code
        raise CheckpointError(f"the checkpoint's model cannot be rebuilt from its stored arguments ({exc})") from exc
    return model.to(device)
