"""Loading the model an analysis command works on (:func:`visionlab.cli.model_flags.load_model`) from a tiny
untrained SimpleNet checkpoint: the stored weights in eval mode on the chosen device, the stored dataset, and the
errors, one whole line each. Models that are not visionlab checkpoints: ``test_foreign_models.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.cli import build_parser, main
from visionlab.cli.model_flags import load_model

from .builders import (
    FASHION,
    tiny_checkpoint,
)


def test_load_gives_the_checkpoint_model_in_eval_mode_its_val_split_and_the_cpu(ckpt: Path) -> None:
    """``_load`` rebuilds the stored weights, in eval mode, on the auto device, with the stored dataset."""
    args = build_parser().parse_args(["attack", "--resume", "ignored"])
    state, model, bundle, device = load_model(args, str(ckpt))  # the resume argument, not args.resume
    assert state["model_args"]["name"] == "simplenet" and state["epoch"] == 0
    assert model.training is False
    saved = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert device == torch.device("cpu") and next(model.parameters()).device == device
    assert len(bundle.val) == 24 and bundle.num_classes == 10 and bundle.class_names == FASHION


def test_load_checks_the_batch_size_and_the_device(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad ``-b`` or ``--device`` is one whole error line before anything is loaded."""
    assert main(["attack", "--resume", str(ckpt), "-b", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: -b/--batch-size: must be an integer >= 1, got 0\n"
    assert main(["attack", "--resume", str(ckpt), "--device", "tpu", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'\n"
    )


def test_load_names_the_checkpoint_it_loads_in_a_class_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``robustness`` loads each ``--resume`` in turn: a mismatch names that one checkpoint, not the list."""
    ckpt = tiny_checkpoint(tmp_path)
    root = tmp_path / "three"
    for c in ("a", "b", "c"):
        for split in ("train", "val"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / c / "x.png")
    argv = ["robustness", "--resume", str(ckpt), "--data", f"folder:{root}", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"visionlab: error: folder:{root}: 3 classes, but {ckpt} predicts 10\n"


def test_load_takes_the_device_flag(ckpt: Path) -> None:
    """``--device cpu`` is handed to the device choice as given."""
    args = build_parser().parse_args(["attack", "--resume", str(ckpt), "--device", "cpu"])
    _, model, _, device = load_model(args, str(ckpt))
    assert device == torch.device("cpu") and next(model.parameters()).device == device
