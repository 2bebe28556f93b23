"""User errors vs bugs on the command line (``visionlab`` and ``main.py``).

A user error (a flag out of range, bad data or checkpoint) prints one line naming the flag and its allowed range
and exits 2, before any data is read or a run directory written; anything else is a bug: a traceback, a request
to report it, exit 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.cli import FIELD_FLAGS, build_parser, format_user_error, main, run, train
from visionlab.engine import TrainConfig, TrainingDiverged, save_checkpoint
from visionlab.errors import CheckpointError, ConfigError, DatasetError
from visionlab.models import build_model

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("visionlab_main_py_for_errors", ROOT / "main.py")
main_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(main_py)

REPORT = "internal error (a bug in visionlab): please report it with the traceback above"


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Any attempt to read a dataset fails the test (as a bug: exit 1); the working directory is empty."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dataset was read before the flags were validated")

    monkeypatch.setattr("visionlab.data.load_dataset", refuse)
    monkeypatch.setattr("visionlab.engine.trainer.load_dataset", refuse)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _one_error_line(err: str, prog: str = "visionlab") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: "), err
    return lines[0].removeprefix(f"{prog}: error: ")


# ------------------------------------------------------------------------------------------------ flag ranges
# (extra train flags, the message's start: the flag and the allowed range)
TRAIN_BAD = [
    (["--label-smoothing", "2"], "--label-smoothing: must be a number in [0, 1), got 2.0"),
    (["--label-smoothing", "1"], "--label-smoothing: must be a number in [0, 1), got 1.0"),
    (["--label-smoothing", "-0.1"], "--label-smoothing: must be a number in [0, 1)"),
    (["--ema", "1"], "--ema: must be a number in [0, 1), got 1.0"),
    (["--ema", "-0.5"], "--ema: must be a number in [0, 1)"),
    (["--warmup", "-2"], "--warmup: must be a number >= 0, got -2.0"),
    (["--clip-grad", "-1"], "--clip-grad: must be a number >= 0, got -1.0"),
    (["--limit-train", "0"], "--limit-train: must be an integer >= 1, got 0"),
    (["--limit-val", "0"], "--limit-val: must be an integer >= 1, got 0"),
    (["-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    (["-j", "-3"], "-j/--workers: must be an integer >= 0, got -3"),
    (["--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["--start-epoch", "-1"], "--start-epoch: must be an integer >= 0, got -1"),
    (["--start-epoch", "3", "--epochs", "3"], "--start-epoch: must be in [0, epochs) = [0, 3), got 3"),
    (["--lr", "0"], "--lr: must be a number > 0, got 0.0"),
    (["--lr", "-0.1"], "--lr: must be a number > 0, got -0.1"),
    (["--lr", "nan"], "--lr: must be a number > 0, got nan"),
    (["--momentum", "1"], "--momentum: must be a number in [0, 1), got 1.0"),
    (["--momentum", "-0.5"], "--momentum: must be a number in [0, 1)"),
    (["--wd", "-0.0001"], "--wd/--weight-decay: must be a number >= 0, got -0.0001"),
    (["--seed", "-1"], "--seed: must be an integer in [0, 2^64), got -1"),
    (["-p", "0"], "-p/--print-freq: must be an integer >= 1, got 0"),
    (["--device", "gpu"], "--device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--device", "cuda:x"], "--device: must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    (["--image-size", "4"], "--image-size: must be an integer in [8, 4096], got 4"),
    (["--image-size", "64"], "--image-size: fashion-mnist images are 28x28: must be 28 or unset, got 64"),
    (["--model", "resnet"], "--model: unknown model 'resnet': must be one of improved, resnet18, simplenet, vit"),
    (["--model", "vit", "--use-custom-conv"], "--use-custom-conv: model 'vit' takes no convolution type"),
]


@pytest.mark.parametrize(("extra", "expected"), TRAIN_BAD, ids=[" ".join(e) for e, _ in TRAIN_BAD])
def test_train_flag_out_of_range(
    extra: list[str], expected: str, tiny_fmnist: str, no_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", tiny_fmnist, "--out", str(out), "--no-progress", *extra]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected)
    assert not out.exists() and not any(no_data.iterdir())  # no run directory, nothing written


def test_vit_image_size_that_is_no_multiple_of_its_patch(
    no_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["train", "--data", f"folder:{tmp_path}", "--model", "vit", "--image-size", "100"]
    assert main(argv) == 2
    expected = "--image-size: image size 100 is not a multiple of the patch size 16"
    assert _one_error_line(capsys.readouterr().err) == expected


# Eval and predict options are checked before the checkpoint is even opened (it does not exist here).
EVAL_BAD = [
    (["-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    (["-j", "-3"], "-j/--workers: must be an integer >= 0, got -3"),
    (["--limit-val", "0"], "--limit-val: must be an integer >= 1, got 0"),
    (["--device", "gpu"], "--device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
]
PREDICT_BAD = [
    (["-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    (["--topk", "0"], "--topk: must be an integer >= 1, got 0"),
    (["--device", "cuda:-1"], "--device: must be auto, cpu, cuda, cuda:N or mps, got 'cuda:-1'"),
]


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [("eval", e, x) for e, x in EVAL_BAD] + [("predict", e, x) for e, x in PREDICT_BAD],
    ids=[f"eval {' '.join(e)}" for e, _ in EVAL_BAD] + [f"predict {' '.join(e)}" for e, _ in PREDICT_BAD],
)
def test_eval_and_predict_flag_out_of_range(
    command: str, extra: list[str], expected: str, no_data: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([command, "--resume", "/no/such/ckpt.pth.tar", *extra]) == 2
    assert _one_error_line(capsys.readouterr().err) == expected


MAIN_BAD = [
    (["--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["--warmup", "-2"], "--warmup: must be a number >= 0, got -2.0"),
    (["--clip-grad", "-1"], "--clip-grad: must be a number >= 0, got -1.0"),
    (["--start-epoch", "-1"], "--start-epoch: must be an integer >= 0, got -1"),
    (["-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    (["-j", "-3"], "-j/--workers: must be an integer >= 0, got -3"),
    (["--lr", "0"], "--lr/--learning-rate: must be a number > 0, got 0.0"),
    (["--momentum", "1"], "--momentum: must be a number in [0, 1), got 1.0"),
    (["--wd", "-1"], "--wd/--weight-decay: must be a number >= 0, got -1.0"),
    (["-p", "0"], "-p/--print-freq: must be an integer >= 1, got 0"),
    (["--use-vit", "--use-custom-conv"], "--use-custom-conv: model 'vit' takes no convolution type"),
    (["-e", "--resume", "/no/ckpt", "-b", "0"], "-b/--batch-size: must be an integer >= 1, got 0"),
    (["-e", "--resume", "/no/ckpt", "-j", "-1"], "-j/--workers: must be an integer >= 0, got -1"),
    (["-e"], "-e/--evaluate needs --resume CKPT"),
]


@pytest.mark.parametrize(("extra", "expected"), MAIN_BAD, ids=[" ".join(e) for e, _ in MAIN_BAD])
def test_main_py_flag_out_of_range(
    extra: list[str], expected: str, tiny_fmnist: str, no_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    where = [] if "-e" in extra else ["--out", str(out)]  # -e alone writes no files: it refuses --out
    assert main_py.main([tiny_fmnist, "--gpu", "-1", *where, *extra]) == 2
    assert _one_error_line(capsys.readouterr().err, prog="main.py").startswith(expected)
    assert not out.exists() and not any(no_data.iterdir())


def test_main_py_gpu_must_name_a_visible_gpu(
    tiny_fmnist: str, no_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main_py.main([tiny_fmnist, "--gpu", "1"]) == 2
    message = _one_error_line(capsys.readouterr().err, prog="main.py")
    assert message == "--gpu: must be in [0, 1) (the visible GPUs) or negative for the CPU, got 1"
    argv = main_py.translate(main_py.build_parser().parse_args([tiny_fmnist, "--gpu", "0"]))
    assert argv[argv.index("--device") + 1] == "cuda:0"


def test_an_exact_resume_still_checks_the_flags_it_would_ignore(no_data: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--resume", "/no/such/checkpoint.pth.tar", "--lr", "-1"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "--lr: must be a number > 0, got -1.0"


# ------------------------------------------------------------------------------------------------ the table
def test_field_flag_table_names_real_flags() -> None:
    def all_options(parser: argparse.ArgumentParser) -> set[str]:  # every command's, nested ones (data fetch) too
        found = {s for a in parser._actions for s in a.option_strings}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found |= {s for sub in action.choices.values() for s in all_options(sub)}
        return found

    options = all_options(build_parser())
    for field, flag in FIELD_FLAGS.items():
        assert set(flag.split("/")) <= options, (field, flag)
    settable = set(train._TRAIN_FIELDS) | {"conv", "check_images", "progress", "quiet", "tensorboard"}
    assert settable <= set(FIELD_FLAGS)
    assert settable == {f.name for f in fields(TrainConfig)} - {"model_kwargs", "wd_exclude_norm_bias"}


def test_format_user_error() -> None:
    assert format_user_error(ConfigError("must be >= 1, got 0", field="epochs")) == "--epochs: must be >= 1, got 0"
    assert format_user_error(ConfigError("bad", field="model_kwargs")) == "model_kwargs: bad"
    assert format_user_error(ConfigError("bad")) == "bad"
    assert format_user_error(ConfigError("x", field="epochs"), {"epochs": "-E"}) == "-E: x"
    worker = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nvisionlab.errors.DatasetError: val.txt:3: cannot decode image a.jpg\n'
    )
    assert format_user_error(worker) == "val.txt:3: cannot decode image a.jpg"


# ------------------------------------------------------------------------------------------------ bugs
def test_a_bug_prints_its_traceback_and_asks_for_a_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken(args: argparse.Namespace) -> Any:
        return 1 / 0

    monkeypatch.setattr(train, "train_config_from_args", broken)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1] == f"visionlab: {REPORT}"


def test_a_value_error_inside_the_library_is_a_bug_not_a_user_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "m.pth.tar", in_channels=1, image_size=28, num_classes=10)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise ValueError("boom")

    monkeypatch.setattr("visionlab.data.load_dataset", boom)
    assert main(["eval", "--resume", str(ckpt), "--data", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert "ValueError: boom" in err and "Traceback" in err and err.strip().endswith(REPORT)


def test_main_py_reports_bugs_as_main_py(
    monkeypatch: pytest.MonkeyPatch, tiny_fmnist: str, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(train, "train_config_from_args", lambda args: {}["missing"])
    assert main_py.main([tiny_fmnist, "--gpu", "-1"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"main.py: {REPORT}"


def _raising(exc: BaseException):
    def func(args: argparse.Namespace) -> int:
        raise exc

    return func


@pytest.mark.parametrize(
    ("exc", "status", "line"),
    [
        (DatasetError("a.txt:3: label 7 outside [0, 5)"), 2, "visionlab: error: a.txt:3: label 7 outside [0, 5)"),
        (CheckpointError("m.pth: checkpoint not found"), 2, "visionlab: error: m.pth: checkpoint not found"),
        (ConfigError("must be >= 1, got 0", field="batch_size"), 2,
         "visionlab: error: -b/--batch-size: must be >= 1, got 0"),
        (TrainingDiverged("loss is nan at epoch 2, step 9; stopping (no checkpoint was written)"), 3,
         "visionlab: training diverged: loss is nan at epoch 2, step 9; stopping (no checkpoint was written). "
         "Lower --lr, raise --warmup or keep --clip-grad above 0."),
        (KeyboardInterrupt(), 130, "visionlab: interrupted; the last checkpoint written is intact"),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x"), 2,
         "visionlab: error: /runs/x: Permission denied"),
        (OSError(errno.ENOSPC, "No space left on device"), 2, "visionlab: error: No space left on device"),
    ],
)  # fmt: skip
def test_exit_status_and_line_per_kind_of_error(
    exc: BaseException, status: int, line: str, capsys: pytest.CaptureFixture
) -> None:
    assert run(_raising(exc), argparse.Namespace()) == status
    assert capsys.readouterr().err.strip() == line


def test_diverged_library_message_names_fields_not_flags() -> None:
    exc = TrainingDiverged("loss is inf at epoch 1, step 3; stopping (no checkpoint was written)")
    assert str(exc).endswith("Lower lr, raise warmup or keep clip_grad above 0.") and "--" not in str(exc)


def test_a_closed_pipe_ends_quietly(capsys: pytest.CaptureFixture) -> None:
    assert run(_raising(BrokenPipeError(errno.EPIPE, "Broken pipe")), argparse.Namespace()) == 141
    assert capsys.readouterr().err == ""


def test_an_unexpected_os_error_is_a_bug(capsys: pytest.CaptureFixture) -> None:
    assert run(_raising(FileNotFoundError(errno.ENOENT, "No such file", "/tmp/x")), argparse.Namespace()) == 1
    assert capsys.readouterr().err.strip().endswith(REPORT)


def test_out_pointing_at_a_file_is_one_line(tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "a-file"
    out.write_text("keep me")
    argv = ["train", "--data", tiny_fmnist, "--out", str(out), "--epochs", "1", "-j", "0", "--no-progress"]
    assert main(argv) == 2
    assert _one_error_line(capsys.readouterr().err) == f"{out}: File exists"
    assert out.read_text() == "keep me"


# ------------------------------------------------------------------------------------------------ checkpoints and data
def _checkpoint(path: Path, *, in_channels: int, image_size: int, num_classes: int, recipe: str = "small") -> Path:
    """A simplenet checkpoint as the trainer writes model_best (weights only), without training."""
    torch.manual_seed(0)
    args = dict(name="simplenet", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                mean=[0.5] * in_channels, std=[0.25] * in_channels, conv="native")  # fmt: skip
    model = build_model(**args)
    save_checkpoint(
        {"model": model.state_dict(), "config": TrainConfig().to_dict(), "model_args": args, "recipe": recipe,
         "class_names": [f"c{i}" for i in range(num_classes)], "epoch": 0, "step": 0, "best_top1": 0.0},
        path,
    )  # fmt: skip
    return path


def _folder_of_every_image_mode(root: Path) -> list[tuple[Path, int]]:
    """folder: layout, classes a (0) and b (1); val images in RGB, RGBA, palette, grayscale and CMYK."""
    rng = np.random.default_rng(0)
    val = []
    for split, modes in (("train", ("RGB", "RGB")), ("val", ("RGB", "RGBA", "P", "L", "CMYK"))):
        for k, mode in enumerate(modes):
            label = k % 2
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            path = root / split / "ab"[label] / f"{k}.{'jpg' if mode == 'CMYK' else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).convert(mode).save(path)
            if split == "val":
                val.append((path, label))
    return val


def test_eval_converts_rgb_folder_images_for_a_grayscale_28px_checkpoint_as_predict_does(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "fm.pth.tar", in_channels=1, image_size=28, num_classes=2)
    val = _folder_of_every_image_mode(tmp_path / "f")
    argv = ["eval", "--resume", str(ckpt), "--data", f"folder:{tmp_path / 'f'}", "-j", "0", "--json", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["n"] == len(val) == 5
    assert "3-channel 28x28 images, the checkpoint takes 1-channel 28x28: converting them" in captured.err

    assert main(["predict", "--resume", str(ckpt), "--json", "--topk", "1", *(str(p) for p, _ in val)]) == 0
    predicted = [json.loads(line)["top"][0]["index"] for line in capsys.readouterr().out.strip().splitlines()]
    agree = sum(p == label for p, (_, label) in zip(predicted, val, strict=True))
    assert result["top1"] == pytest.approx(100.0 * agree / len(val))  # eval sees what predict sees


def test_eval_converts_fashion_mnist_for_an_rgb_32px_checkpoint(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "c.pth.tar", in_channels=3, image_size=32, num_classes=10)
    assert main(["eval", "--resume", str(ckpt), "--data", tiny_fmnist, "-j", "0", "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["n"] == 48
    assert "1-channel 28x28 images, the checkpoint takes 3-channel 32x32" in captured.err


def test_eval_on_data_with_another_number_of_classes(
    tmp_path: Path, tiny_fmnist: str, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "m.pth.tar", in_channels=1, image_size=28, num_classes=2)
    assert main(["eval", "--resume", str(ckpt), "--data", tiny_fmnist, "-j", "0"]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"{tiny_fmnist}: 10 classes, but {ckpt} predicts 2"


def test_fine_tuning_on_data_the_checkpoint_cannot_take_says_both_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "fm.pth.tar", in_channels=1, image_size=28, num_classes=2)
    _folder_of_every_image_mode(tmp_path / "f")
    out = tmp_path / "run"
    argv = ["train", "--resume", str(ckpt), "--data", f"folder:{tmp_path / 'f'}", "--out", str(out), "-j", "0"]
    assert main(argv) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"folder:{tmp_path / 'f'}: 3-channel 28x28 images, but the checkpoint {ckpt} takes 1-channel 28x28 images"
    )
    assert not out.exists()


def test_a_checkpoint_that_could_execute_code_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    for command in (["eval"], ["predict", str(path)], ["train"]):
        assert main([*command, "--resume", str(path)]) == 2
        message = _one_error_line(capsys.readouterr().err)
        assert message.startswith(f"{path}: not a plain visionlab checkpoint: refused because loading it could")
        assert "weights_only" not in message
    assert not marker.exists()


def test_a_checkpoint_without_model_args(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "w.pth.tar"
    save_checkpoint({"model": {}, "config": {}}, path)
    assert main(["eval", "--resume", str(path)]) == 2
    assert "no model architecture stored" in _one_error_line(capsys.readouterr().err)


def test_compare_with_the_wrong_number_of_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    assert main(["compare", str(run_dir), "--labels", "a", "b"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "--labels: 2 labels for 1 runs"
    assert main(["compare", str(run_dir)]) == 2
    assert "no epoch records" in _one_error_line(capsys.readouterr().err)


def test_predict_images_and_data_together(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_fmnist: str) -> None:
    ckpt = _checkpoint(tmp_path / "m.pth.tar", in_channels=1, image_size=28, num_classes=10)
    assert main(["predict", "--resume", str(ckpt), "x.png", "--data", tiny_fmnist]) == 2
    assert "not both" in _one_error_line(capsys.readouterr().err)
    assert main(["predict", "--resume", str(ckpt), "--data", tiny_fmnist, "--split", "val"]) == 2
    assert "keeps its images in arrays, not files; use eval" in _one_error_line(capsys.readouterr().err)
