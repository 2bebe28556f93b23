"""``visionlab certify`` in process: its numbers are the library's CERTIFY on the same images (whatever
``-b``), the files it writes (JSON, per-image CSV, curve) next to the model, a model from a factory file, and
each bad argument refused in one line naming its flag before any model is read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from visionlab.cli import main
from visionlab.cli.certify import CSV_COLUMNS, DEFAULT_RADII
from visionlab.robustness import DEFAULT_RADII as LIBRARY_RADII
from visionlab.robustness import SmoothedClassifier

from .builders import checkpoint_model, checkpoint_val, tiny_checkpoint

SETTINGS = ["--sigma", "0.25", "--n0", "8", "--n", "40", "--alpha", "0.01", "--batch", "64", "--seed", "3"]


def _library(model: torch.nn.Module, val, n_images: int) -> dict:
    images = torch.stack([val[i][0] for i in range(n_images)])
    labels = torch.tensor([int(val[i][1]) for i in range(n_images)])
    cert = SmoothedClassifier(model, 10, 0.25, batch=1000, seed=3).certify(images, labels, 8, 40, 0.01)
    return cert.to_dict([0.0, 0.1, 0.2])


def test_certify_equals_the_library_on_the_same_images_and_writes_its_files(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _library(checkpoint_model(ckpt), checkpoint_val(ckpt), 6)
    argv = ["certify", "--resume", str(ckpt), *SETTINGS, "--limit-val", "6", "--radii", "0", "0.1", "0.2",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "-b", "4", "--json"]) == 0  # two calls of 4 and 2 images
    line = json.loads(capsys.readouterr().out)
    out = ckpt.parent / "certify"
    written = json.loads((out / "certify.json").read_text())
    assert written["images_detail"] == expected["images_detail"]
    assert line["certified_accuracy"] == expected["certified_accuracy"] == written["certified_accuracy"]
    assert (line["sigma"], line["n0"], line["n"], line["alpha"], line["images"], line["model"]) == (
        0.25,
        8,
        40,
        0.01,
        6,
        "run",
    )
    assert "images_detail" not in line and line["seconds"] >= 0
    with open(out / "certify.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 6
    assert [float(r["radius"]) for r in rows] == [r["radius"] for r in expected["images_detail"]]
    assert (out / "certified_accuracy.png").read_bytes()[:4] == b"\x89PNG"

    assert main([*argv, "--out", str(ckpt.parent / "table")]) == 0  # one call of all six; the table printed
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("run: smoothed with σ = 0.25, n0 = 8, n = 40, α = 0.01 on 6 images (")
    assert printed[1] == f"{'L2 radius':>10}{'certified top-1 %':>19}"
    assert printed[2:] == [f"{r['radius']:>10.4g}{r['accuracy']:>19.2f}" for r in expected["certified_accuracy"]]
    again = json.loads((ckpt.parent / "table" / "certify.json").read_text())
    assert again["images_detail"] == expected["images_detail"]


def test_certify_takes_a_model_from_a_factory_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tiny_checkpoint(tmp_path)
    factory = tmp_path / "factory" / "net.py"
    factory.parent.mkdir()
    factory.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")  # fmt: skip
    argv = ["certify", "--model-factory", f"{factory}:build", "--data", f"fashion-mnist:{tmp_path / 'fm'}",
            *SETTINGS, "--limit-val", "3", "--no-progress", "--json"]  # fmt: skip
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["model"] == "build" and line["images"] == 3
    assert (factory.parent / "certify" / "certify.json").is_file()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    expected = _library(net, checkpoint_val(ckpt), 3)  # --mean/--std unset: a factory's model takes pixels as they are
    written = json.loads((factory.parent / "certify" / "certify.json").read_text())
    assert written["images_detail"] == expected["images_detail"]


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        ([], "--sigma: required"),
        (["--sigma", "0"], "--sigma: must be a number > 0 (pixel units), got 0.0"),
        (["--sigma", "-0.5"], "--sigma: must be a number > 0"),
        (["--sigma", "nan"], "--sigma: must be a number > 0"),
        (["--sigma", "0.25", "--n0", "200", "--n", "100"], "--n0: must be <= --n = 100"),
        (["--sigma", "0.25", "--n0", "0"], "--n0: must be an integer >= 1, got 0"),
        (["--sigma", "0.25", "--n", "0"], "--n: must be an integer >= 1, got 0"),
        (["--sigma", "0.25", "--alpha", "0"], "--alpha: must be a number in (0, 1), got 0.0"),
        (["--sigma", "0.25", "--alpha", "1"], "--alpha: must be a number in (0, 1), got 1.0"),
        (["--sigma", "0.25", "--batch", "0"], "--batch: must be an integer >= 1, got 0"),
        (["--sigma", "0.25", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
        (["--sigma", "0.25", "--radii", "0", "-1"], "--radii: must be a number >= 0 (an L2 radius in pixel units)"),
        (["--sigma", "0.25", "--limit-val", "0"], "--limit-val: must be an integer >= 1"),
        (["--sigma", "0.25", "-b", "0"], "-b/--batch-size: must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_naming_the_flag_before_the_model_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], line: str
) -> None:
    assert main(["certify", "--resume", str(tmp_path / "absent.pth.tar"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"visionlab: error: {line}"), err


def test_no_model_is_refused_naming_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certify", "--sigma", "0.25"]) == 2
    assert capsys.readouterr().err.startswith("visionlab: error: --resume: required")


def test_the_default_radii_are_the_librarys() -> None:
    assert DEFAULT_RADII == LIBRARY_RADII
