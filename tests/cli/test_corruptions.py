"""``visionlab corruptions`` in process: its accuracies are a hand loop over the same corrupted images, for a
grayscale checkpoint and an RGB model from a factory file; ``--baseline`` adds the corruption errors; the table,
JSON and heat map land next to the model; several checkpoints in one call give each one's separate result from
images corrupted once, and checkpoints taking other images are refused; every bad argument is one line naming its
flag, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visionlab.robustness.corruption_eval as corruption_eval
from visionlab.cli import main
from visionlab.data import load_dataset
from visionlab.models import load_classifier
from visionlab.robustness import corrupt, corruption_errors

from .builders import checkpoint_model, checkpoint_val, model_state, save_state, tiny_checkpoint

FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3))
"""


def _hand(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, corruption: str | None, s: int) -> float:
    with torch.no_grad():
        predicted = model(corrupt(images, corruption, s, seed=2)).argmax(1)
    return 100.0 * float((predicted == labels).float().mean())


def _first(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["corruptions", *argv, "--seed", "2", "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_grayscale_checkpoints_accuracies_are_a_hand_loop(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _run(["--resume", str(ckpt), "--corruptions", "contrast,gaussian_noise", "--severities", "1", "5",
                   "--limit-val", "8", "-b", "3"], capsys)  # fmt: skip
    images, labels = _first(checkpoint_val(ckpt), 8)
    model = checkpoint_model(ckpt)
    assert result["n"] == 8 and result["corruptions"] == ["contrast", "gaussian_noise"]
    assert result["clean_top1"] == pytest.approx(_hand(model, images, labels, None, 0))
    for c in ("contrast", "gaussian_noise"):
        assert result["top1"][c] == pytest.approx([_hand(model, images, labels, c, s) for s in (1, 5)])
    out = ckpt.parent / "corruptions"
    assert json.loads((out / "corruptions.json").read_text()) == result
    assert (out / "corruptions.csv").read_text().count("\n") == 1 + 1 + 4
    assert Image.open(out / "corruptions.png").format == "PNG"


def test_an_rgb_model_from_a_factory_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "images" / split / name / f"{i}.png")
    (tmp_path / "net.py").write_text(FACTORY)
    spec, data = f"{tmp_path / 'net.py'}:build", f"folder:{tmp_path / 'images'}"
    result = _run(["--model-factory", spec, "--data", data, "--image-size", "16", "--corruptions", "frost",
                   "--severities", "3"], capsys)  # fmt: skip
    images, labels = _first(load_dataset(data, image_size=16).val, 6)
    model = load_classifier(factory=spec)
    assert result["top1"] == {"frost": [pytest.approx(_hand(model, images, labels, "frost", 3))]}
    assert (tmp_path / "corruptions" / "corruptions.json").is_file()  # next to the factory file


def test_a_baseline_adds_the_corruption_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, base = tiny_checkpoint(tmp_path), tiny_checkpoint(tmp_path, run="base")
    torch.manual_seed(1)  # another network in the baseline checkpoint
    state = torch.load(base, weights_only=False)
    state["model"] = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, base)
    flags = ["--corruptions", "noise", "--severities", "2-3", "--limit-val", "12"]
    alone = _run(["--resume", str(base), *flags], capsys)
    result = _run(["--resume", str(ckpt), "--baseline", str(base), *flags], capsys)
    assert result["corruptions"] == ["gaussian_noise", "shot_noise", "impulse_noise"] and result["severities"] == [2, 3]
    baseline = result.pop("baseline")
    assert baseline == {**alone, "model": "base"}
    errors = corruption_errors(result, baseline)
    assert {k: result[k] for k in errors} == errors


def _other(root: Path, run: str, seed: int) -> Path:
    """A :func:`tiny_checkpoint` in ``root/run`` with other random weights (seeded by ``seed``)."""
    path = tiny_checkpoint(root, run=run)
    torch.manual_seed(seed)
    state = torch.load(path, weights_only=False)
    state["model"] = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, path)
    return path


def _rgb_32px(root: Path, run: str = "rgb") -> Path:
    """A 3-channel 32-px SimpleNet checkpoint trained on the tiny Fashion-MNIST set of ``root`` (which ``eval``
    converts to 3 channels at 32 px)."""
    data = f"fashion-mnist:{root / 'fm'}"
    return save_state(model_state(in_channels=3, image_size=32, data=data), root / run / "model_best.pth.tar")


def test_several_checkpoints_give_each_ones_separate_result_from_images_corrupted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpts = [tiny_checkpoint(tmp_path), _other(tmp_path, "b", 1), _other(tmp_path, "c", 2)]
    base = _other(tmp_path, "base", 3)
    flags = ["--corruptions", "contrast,shot_noise", "--severities", "2", "4", "--limit-val", "10", "-b", "4",
             "--baseline", str(base)]  # fmt: skip
    alone = [_run(["--resume", str(c), *flags], capsys) for c in ckpts]
    real, made = corruption_eval.corrupt, []

    def counted(images, corruption, severity, **kwargs):
        made.append((corruption, severity, list(kwargs["indices"])))
        return real(images, corruption, severity, **kwargs)

    monkeypatch.setattr(corruption_eval, "corrupt", counted)
    together = _run(["--resume", *map(str, ckpts), *flags], capsys)
    # Clean + 2 corruptions x 2 severities, each batch made once for the three checkpoints and the baseline.
    settings = [(None, 0), ("contrast", 2), ("contrast", 4), ("shot_noise", 2), ("shot_noise", 4)]
    assert made == [(*s, list(b)) for s in settings for b in (range(4), range(4, 8), range(8, 10))]
    assert together == {"models": alone} and len({json.dumps(r["counts"]) for r in alone}) > 1
    for ckpt, result in zip(ckpts, alone, strict=True):
        assert json.loads((ckpt.parent / "corruptions" / "corruptions.json").read_text()) == result
    assert main(["corruptions", "--resume", *map(str, ckpts), *flags, "--seed", "2", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["corruption", "run", "b", "c"]
    assert lines[2].split() == ["clean", *(f"{r['clean_top1']:.2f}" for r in alone)]
    assert lines[5].split() == ["mean", *(f"{r['mean_corruption_top1']:.2f}" for r in alone)]
    assert lines[6].split() == ["mCE", *(f"{r['mce']:.2f}" for r in alone)]


def test_worker_processes_corrupt_data_held_in_memory_to_the_same_result(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--resume", str(ckpt), "--corruptions", "impulse_noise,fog", "--severities", "3", "--limit-val", "10",
             "-b", "4"]  # fmt: skip
    runs = [_run([*flags, "-j", str(workers)], capsys) for workers in (0, 1, 2)]  # fashion-mnist, held in memory
    assert runs[0] == runs[1] == runs[2] and runs[0]["n"] == 10


def test_a_baseline_taking_other_images_is_evaluated_on_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tiny_checkpoint(tmp_path)
    base = _rgb_32px(tmp_path)
    flags = ["--corruptions", "fog", "--severities", "1", "--limit-val", "6"]
    alone = _run(["--resume", str(base), *flags], capsys)
    result = _run(["--resume", str(ckpt), "--baseline", str(base), *flags], capsys)
    assert result["baseline"] == {**alone, "model": "rgb"}


def test_checkpoints_taking_other_images_are_refused_naming_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tiny_checkpoint(tmp_path)
    rgb = _rgb_32px(tmp_path)
    assert main(["corruptions", "--resume", str(ckpt), str(rgb), "--corruptions", "fog"]) == 2
    data = f"fashion-mnist:{tmp_path / 'fm'}"
    assert capsys.readouterr().err == (
        f"visionlab: error: --resume: {rgb} takes 3-channel 32x32 images of {data} (10 classes, converted by the "
        f"small recipe's evaluation transform), but {ckpt} takes 1-channel 28x28 images of {data} (10 classes); "
        "checkpoints evaluated together must take the same images (run them one at a time)\n"
    )
    assert not (ckpt.parent / "corruptions").exists() and not (rgb.parent / "corruptions").exists()


def test_a_missing_checkpoint_among_several_is_one_line(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corruptions", "--resume", str(ckpt), "nope.pth"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --resume: nope.pth: checkpoint not found\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--severities", "6"], "--severities: severities are 1-5 (ImageNet-C's), got 6"),
        (["--severities", "0-2"], "--severities: severities are 1-5 (ImageNet-C's), got 0"),
        (["--severities", "x"], "--severities: 'x' is not a severity in 1-5 or a range such as 1-5"),
        (["--corruptions", "fogg"], "--corruptions: unknown corruption 'fogg'; the corruptions are gaussian_noise, "
                                    "shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur, "
                                    "snow, frost, fog, brightness, contrast, elastic_transform, pixelate, "
                                    "jpeg_compression (or a family: noise, blur, weather, digital, or all)"),
        (["--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
        (["--limit-val", "0"], "--limit-val: must be an integer >= 1, got 0"),
        (["-j", "-1"], "-j/--workers: must be an integer >= 0, got -1"),
        (["--baseline", "nope.pth"], "--baseline: nope.pth: no such checkpoint file"),
        (["--weights", "w.pth"], "--weights: only with --model-arch or --model-factory (a checkpoint stores its "
                                 "weights, normalization and input size)"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_one_line_naming_its_flag(
    argv: list[str], message: str, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["corruptions", "--resume", str(ckpt), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"visionlab: error: {message}\n" and captured.out == ""
    assert not (ckpt.parent / "corruptions").exists()


def test_no_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corruptions"]) == 2
    assert capsys.readouterr().err.startswith("visionlab: error: --resume: required")
