"""``visionlab saliency`` in process over a tiny untrained checkpoint, with a recording stand-in for
:func:`visionlab.explain.saliency`: what the command hands it, the grids written pixel for pixel, the lines printed
whole, and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import visionlab.explain as explain
from visionlab.cli import main
from visionlab.explain import TAG_SALIENCY

from .builders import (
    FASHION,
    checkpoint_model,
    checkpoint_val,
    image_tags,
    same_png,
)


class _Saliency:
    """Records ``saliency``'s arguments; the maps are a fixed ramp, bright at the right edge."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append({"training": model.training, "images": images.clone(), **kwargs})
        ramp = torch.linspace(0, 1, images.shape[-1]) ** 4
        return ramp.expand(images.shape[0], images.shape[-2], -1).clone()


def test_saliency_command_hands_saliency_its_flags_and_writes_three_grids(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``saliency --target label``: the labels, SmoothGrad flags, seed-0 generator and batch size reach
    ``saliency``; images, red overlay and heat map grids are those of the maps; the printed lines are exact."""
    from visionlab.explain import heatmap_overlay, red_overlay

    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    out = tmp_path / "sal"
    argv = ["saliency", "--resume", str(ckpt), "--num", "13", "--target", "label", "--smoothgrad", "3",
            "--noise-std", "0.25", "-b", "7", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    val = checkpoint_val(ckpt)
    images = torch.stack([val[i][0] for i in range(13)])
    labels = torch.tensor([int(val[i][1]) for i in range(13)])
    (call,) = fake.calls
    generator = call.pop("generator")
    target = call.pop("target")
    assert torch.equal(call.pop("images"), images) and torch.equal(target, labels)
    assert call == {"training": False, "smoothgrad_samples": 3, "noise_std": 0.25, "batch_size": 7}
    assert generator.initial_seed() == 0
    maps = fake(checkpoint_model(ckpt), images)
    same_png(out / "images.png", images, tmp_path)
    same_png(out / "saliency.png", red_overlay(images, maps), tmp_path)
    same_png(out / "saliency_heatmap.png", heatmap_overlay(images, maps), tmp_path)
    assert image_tags(out / "tensorboard") == {TAG_SALIENCY: (10 * 30 + 2, 2 * 30 + 2)}
    with torch.no_grad():
        predicted = checkpoint_model(ckpt)(images).argmax(1)
    names = ", ".join(
        FASHION[p] + ("" if p == y else " (x)") for p, y in zip(predicted.tolist(), labels.tolist(), strict=True)
    )
    assert " (x)" in names and names.count(" (x)") < 13  # both kinds of mark are shown
    assert capsys.readouterr().out.splitlines() == [
        "saliency of 13 images (label class), 10 per row:",
        f"  {names}",
        f"wrote {out / 'images.png'}",
        f"wrote {out / 'saliency.png'}",
        f"wrote {out / 'saliency_heatmap.png'}",
        f"TensorBoard: {out / 'tensorboard'} (tag {TAG_SALIENCY})",
    ]


def test_saliency_command_explains_the_prediction_by_default_beside_the_checkpoint(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``--target`` no target is handed over (the predicted class); ``--num`` past the split takes all;
    the defaults are no SmoothGrad, noise 0.1 and batch 250; files go to ``CKPT_DIR/saliency``."""
    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    assert main(["saliency", "--resume", str(ckpt), "--num", "30", "--no-progress"]) == 0
    (call,) = fake.calls
    call.pop("generator"), call.pop("images")
    assert call == {"training": False, "target": None, "smoothgrad_samples": 0, "noise_std": 0.1, "batch_size": 250}
    out = ckpt.parent / "saliency"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "saliency of 24 images (predicted class), 10 per row:"
    assert lines[2:] == [f"wrote {out / n}" for n in ("images.png", "saliency.png", "saliency_heatmap.png")] + [
        f"TensorBoard: {out / 'tensorboard'} (tag {TAG_SALIENCY})"
    ]
    with Image.open(out / "images.png") as img:
        assert img.size == (10 * 30 + 2, 3 * 30 + 2)


def test_saliency_of_one_image(ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--num 1``, the smallest allowed, explains one image: its grid is the image alone."""
    monkeypatch.setattr(explain, "saliency", _Saliency())
    assert main(["saliency", "--resume", str(ckpt), "--num", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "saliency of 1 images (predicted class), 10 per row:"
    with Image.open(ckpt.parent / "saliency" / "images.png") as img:
        assert img.size == (28, 28)


def test_saliency_refuses_num_zero(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--num 0`` is one whole error line."""
    assert main(["saliency", "--resume", str(ckpt), "--num", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --num: must be an integer >= 1, got 0\n"


@pytest.mark.parametrize("extra", [[], ["--smoothgrad", "0"]])
def test_saliency_refuses_a_noise_std_without_smoothgrad(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plain map adds no noise: ``--noise-std`` alone is one whole line, before the (missing) checkpoint."""
    assert main(["saliency", "--resume", str(tmp_path / "missing.pth.tar"), "--noise-std", "0.2", *extra]) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --noise-std: only with --smoothgrad N (the noise of its N copies; the plain map has none)\n"
    )


def test_saliency_takes_a_noise_std_with_one_smoothgrad_sample(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--smoothgrad 1`` is the fewest samples that read ``--noise-std``; without it the noise is 0.1."""
    fake = _Saliency()
    monkeypatch.setattr(explain, "saliency", fake)
    argv = ["saliency", "--resume", str(ckpt), "--num", "1", "--out", str(ckpt.parent / "s"), "--smoothgrad", "1"]
    assert main([*argv, "--noise-std", "0.2"]) == 0
    assert main(argv) == 0
    assert [(c["smoothgrad_samples"], c["noise_std"]) for c in fake.calls] == [(1, 0.2), (1, 0.1)]
