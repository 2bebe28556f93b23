"""The command line end to end on tiny data: train 1 epoch, eval from model_best, predict, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlab.cli import main


def _train(data: str, out: Path, *extra: str) -> None:
    argv = ["train", "--data", data, "--epochs", "1", "-b", "16", "--limit-train", "64", "--limit-val", "32",
            "-j", "0", "--out", str(out), "--no-progress", "--no-tensorboard", "--lr", "0.01", *extra]  # fmt: skip
    assert main(argv) == 0


def test_train_then_eval_and_predict_from_model_best(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _train(tiny_fmnist, run)
    out = capsys.readouterr().out
    assert "* Acc@1" in out and f"run directory: {run}" in out

    assert main(["eval", "--resume", str(run / "model_best.pth.tar"), "--json", "-j", "0", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 48 and 0.0 <= result["top1"] <= result["top5"] <= 100.0

    assert main(["eval", "--resume", str(run / "checkpoint.pth.tar"), "--limit-val", "8", "-j", "0"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("* Acc@1 ") and " Acc@5 " in line

    image = tmp_path / "shirt.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(image)
    assert main(["predict", "--resume", str(run / "model_best.pth.tar"), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out.strip())
    assert pred["image"] == str(image) and len(pred["top"]) == 5
    assert sum(t["prob"] for t in pred["top"]) <= 1.0 + 1e-6
    assert pred["top"][0]["prob"] >= pred["top"][-1]["prob"]
    assert all(t["class"] in ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot") for t in pred["top"])  # fmt: skip


def test_compare_two_runs(tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _train(tiny_fmnist, tmp_path / "a")
    _train(tiny_fmnist, tmp_path / "b", "--seed", "1")
    figure = tmp_path / "cmp.png"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(figure)]) == 0
    assert figure.is_file() and figure.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "/no/such/dir"], "no such directory"),
        (["train", "--model", "nope", "--data", "fashion-mnist:{fm}"], "unknown model"),
        (["eval", "--resume", "/no/ckpt.pth.tar"], "checkpoint not found"),
        (["predict", "--resume", "{ckpt}", "/no/image.png"], "no such image"),
    ],
)
def test_user_errors_are_one_clear_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_fmnist: str
) -> None:
    ckpt = tmp_path / "run" / "model_best.pth.tar"
    if "{ckpt}" in argv:
        _train(tiny_fmnist, tmp_path / "run")
        capsys.readouterr()
    argv = [a.format(fm=tiny_fmnist.split(":", 1)[1], ckpt=ckpt) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "visionlab: error:" in err and message in err


def test_exact_resume_ignores_arithmetic_flags_loudly(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionlab.cli import build_parser, train_config_from_args

    _train(tiny_fmnist, tmp_path / "run")
    args = build_parser().parse_args(
        ["train", "--resume", str(tmp_path / "run" / "checkpoint.pth.tar"), "--lr", "0.5", "--epochs", "3"]
    )
    cfg, resume = train_config_from_args(args)
    assert cfg.lr == 0.01 and cfg.epochs == 3 and resume
    assert "ignoring --lr 0.5" in capsys.readouterr().err
