"""A model that is not a visionlab checkpoint through the command line: a torchvision ``resnet18`` with saved random
weights (``--model-arch resnet18 --weights FILE``) and a user factory file (``--model-factory FILE.py:FUNCTION``),
each through ``eval``, ``attack``, ``saliency`` and ``report`` on a tiny on-disk ImageFolder (3 classes, 32x32).

The CLI's PGD (random start off) must be the Python API's (:class:`visionlab.robustness.PGD` on
``wrap_model(network, mean, std)``) and ``torchattacks.PGD`` on the same normalized model, to float tolerance; every
bad input is one line naming its flag, exit status 2, before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from visionlab.cli import main
from visionlab.data import load_dataset
from visionlab.errors import ModelLoadError
from visionlab.models import load_classifier, wrap_model
from visionlab.models.pretrained import IMAGENET_MEAN, IMAGENET_STD
from visionlab.robustness import PGD

CLASSES = ("cat", "dog", "fox")
EPS, STEP, STEPS = 2 / 255, 1 / 255, 3

FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3))


def broken():
    raise RuntimeError("needs a GPU")


def not_a_module():
    return 42


def two_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder layout: train/ (one image a class) and val/ (four a class) of random 32x32 RGB PNGs."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1), ("val", 4)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision resnet18 with 3 classes and random weights (seed 0), its state dict saved."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("factory") / "net.py"
    path.write_text(FACTORY, encoding="utf-8")
    return path


def _val(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation images as the CLI reads them (``--image-size 32``), in order."""
    val = load_dataset(f"folder:{folder}", image_size=32).val
    return torch.stack([val[i][0] for i in range(len(val))]), torch.tensor([val[i][1] for i in range(len(val))])


def _resnet(weights: Path) -> torch.nn.Module:
    net = torchvision.models.resnet18(num_classes=3)
    net.load_state_dict(torch.load(weights, weights_only=True))
    return wrap_model(net, mean=IMAGENET_MEAN, std=IMAGENET_STD).eval()


def _attack(argv: list[str], capsys: pytest.CaptureFixture) -> dict:
    flags = ["--eps", str(EPS), "--step", str(STEP), "--steps", str(STEPS), "--no-random-start", "--json", "-v"]
    assert main(["attack", *argv, *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_resnet18_by_name_pgd_equals_the_python_api_and_torchattacks(
    folder: Path, resnet_weights: Path, capsys: pytest.CaptureFixture
) -> None:
    """``attack --model-arch resnet18``: the robust accuracy and the adversarial images written are those of
    visionlab's PGD and torchattacks' PGD on ``wrap_model(resnet18, ImageNet mean/std)``."""
    import torchattacks

    argv = ["--model-arch", "resnet18", "--weights", str(resnet_weights), "--data", f"folder:{folder}"]
    result = _attack([*argv, "--image-size", "32"], capsys)
    model, (images, labels) = _resnet(resnet_weights), _val(folder)
    ours = PGD(model, eps=EPS, step=STEP, steps=STEPS, random_start=False)(images, labels)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)(images, labels)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    with torch.no_grad():
        clean, robust = model(images).argmax(1) == labels, model(ours).argmax(1) == labels
    assert result["n"] == 12
    assert result["clean_top1"] == pytest.approx(100 * clean.float().mean().item())
    assert result["robust_top1"] == pytest.approx(100 * robust.float().mean().item())
    # Not vacuous: 3 sign steps of 1/255 reach the 2/255 boundary of the ball wherever the gradient is not zero (an
    # invariant, not a count of fooled images, which would depend on the random weights and the CPU's rounding).
    assert (ours - images).abs().amax().item() == pytest.approx(EPS, abs=1e-6)
    out = resnet_weights.parent / "attack"
    assert json.loads((out / "attack.json").read_text())["robust_top1"] == result["robust_top1"]
    written = np.asarray(Image.open(out / "adversarial.png").convert("RGB"), dtype=np.int16)
    from visionlab.explain import save_grid

    expected = np.asarray(Image.open(save_grid(ours, out.parent / "api.png")).convert("RGB"), dtype=np.int16)
    assert written.shape == expected.shape and np.abs(written - expected).max() <= 1


def test_resnet18_by_name_through_eval_saliency_and_report(
    folder: Path, resnet_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """eval prints the API's top-1; saliency writes its grids next to the weights; the report of the model shows
    its evaluation and the attack, and neither a configuration nor training curves."""
    argv = ["--model-arch", "resnet18", "--weights", str(resnet_weights), "--data", f"folder:{folder}",
            "--image-size", "32"]  # fmt: skip
    assert main(["eval", *argv, "--json", "--no-progress"]) == 0
    stats = json.loads(capsys.readouterr().out)
    model, (images, labels) = _resnet(resnet_weights), _val(folder)
    with torch.no_grad():
        assert stats["top1"] == pytest.approx(100 * (model(images).argmax(1) == labels).float().mean().item())
    assert stats["n"] == 12
    assert main(["saliency", *argv, "--num", "6"]) == 0
    assert {p.name for p in (resnet_weights.parent / "saliency").glob("*.png")} == {
        "images.png", "saliency.png", "saliency_heatmap.png"
    }  # fmt: skip
    capsys.readouterr()
    _attack(argv, capsys)
    page = tmp_path / "report.html"
    assert main(["report", *argv, "--out", str(page), "--num", "4"]) == 0
    html = page.read_text(encoding="utf-8")
    assert 'id="metrics"' in html and 'id="adversarial"' in html and 'id="predictions"' in html
    assert 'id="curves"' not in html and 'id="config"' not in html and 'id="conv"' not in html
    assert f"{stats['top1']:.2f} / {stats['top5']:.2f} on 12 images (resnet18.pth)" in html
    assert "visionlab robustness --model-arch resnet18 --weights" in html  # the suggestion names this model


def test_a_factory_file_through_eval_attack_saliency_and_report(
    folder: Path, factory: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--model-factory net.py:build --mean 0.5 --std 0.25``: the same numbers as ``load_classifier`` and PGD in
    Python; outputs next to the factory file."""
    spec = f"{factory}:build"
    argv = ["--model-factory", spec, "--mean", "0.5", "--std", "0.25", "--data", f"folder:{folder}",
            "--image-size", "32"]  # fmt: skip
    model = load_classifier(factory=spec, mean=[0.5], std=[0.25])
    assert model.normalize.mean.flatten().tolist() == [0.5] * 3 and model.normalize.std.flatten().tolist() == [0.25] * 3
    images, labels = _val(folder)
    assert main(["eval", *argv, "--json", "--no-progress"]) == 0
    with torch.no_grad():
        top1 = 100 * (model(images).argmax(1) == labels).float().mean().item()
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(top1)
    result = _attack(argv, capsys)
    adv = PGD(model, eps=EPS, step=STEP, steps=STEPS, random_start=False)(images, labels)
    with torch.no_grad():
        assert result["robust_top1"] == pytest.approx(100 * (model(adv).argmax(1) == labels).float().mean().item())
    assert (factory.parent / "attack" / "adversarial.png").is_file()
    assert main(["saliency", *argv, "--num", "3"]) == 0
    assert (factory.parent / "saliency" / "saliency.png").is_file()
    assert main(["robustness", *argv, "--eps", "0", str(EPS), "--steps", "1", "--limit-val", "6"]) == 0
    rows = json.loads((factory.parent / "robustness" / "sweep.json").read_text())
    assert {r["model"] for r in rows} == {"build"} and {r["n"] for r in rows} == {6}
    clean = 100 * (model(images[:6]).argmax(1) == labels[:6]).float().mean().item()
    assert [r["clean_top1"] for r in rows] == pytest.approx([clean] * len(rows))
    page = tmp_path / "factory.html"
    assert main(["report", *argv, "--out", str(page), "--num", "3"]) == 0
    html = page.read_text(encoding="utf-8")
    assert f"{spec}" in html and 'id="curves"' not in html and 'id="saliency"' in html
    assert "Robust" in html and "robustness/sweep.json" in html  # the sweep written next to the factory file


def test_load_classifier_reads_the_number_of_classes_from_the_weights(resnet_weights: Path) -> None:
    """A 3-class resnet18 state dict builds a 3-class resnet18 with exactly those weights, ImageNet statistics in
    front; ``transforms_of`` reads the statistics of a torchvision weights enum (nothing downloaded)."""
    model = load_classifier(arch="resnet18", weights=resnet_weights)
    saved = torch.load(resnet_weights, weights_only=True)
    assert model.net.fc.out_features == 3
    assert all(torch.equal(model.net.state_dict()[k], v) for k, v in saved.items())
    torch.testing.assert_close(model.normalize.std.flatten(), torch.tensor(IMAGENET_STD))
    other = load_classifier(arch="resnet18", weights=resnet_weights, transforms_of="ResNet18_Weights.IMAGENET1K_V1")
    torch.testing.assert_close(other.normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def _bad_weights(tmp: Path, resnet_weights: Path, change: str) -> Path:
    state = torch.load(resnet_weights, weights_only=True)
    if change == "missing":
        del state["layer1.0.conv1.weight"]
    elif change == "checkpoint":
        state = {"model": state, "model_args": {"name": "resnet18"}}
    elif change == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    else:
        state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp / f"{change}.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("arch", "--model-arch: 'resnet1' is not a torchvision classification architecture"),
        ("weights-file", "--weights: {tmp}/none.pth: no such weights file"),
        ("missing", "--weights: {tmp}/missing.pth: the weights do not fit ResNet (missing layer1.0.conv1.weight)"),
        ("unexpected", "--weights: {tmp}/unexpected.pth: the weights do not fit ResNet (unexpected extra.weight)"),
        ("shape", "--weights: {tmp}/shape.pth: layer1.0.conv1.weight has shape (64, 64, 1, 1), the model's is "
                  "(64, 64, 3, 3)"),
        ("checkpoint", "--weights: {tmp}/checkpoint.pth: a visionlab checkpoint, not a state dict"),
        ("factory-file", "--model-factory: {tmp}/none.py: no such file (from {tmp}/none.py:build)"),
        ("no-function", "--model-factory: {factory}: no function 'nope' in it (from {factory}:nope)"),
        ("raises", "--model-factory: {factory}:broken: broken() raised RuntimeError: needs a GPU"),
        ("not-a-module", "--model-factory: {factory}:not_a_module: not_a_module() returned a int, not a "
                         "torch.nn.Module"),
        ("classes", "--model-factory: {factory}:two_classes: the model's output is (1, 2) for one image; the data "
                    "has 3 classes"),
        ("no-weights", "--weights: required with --model-arch"),
        ("weights-with-resume", "--weights: only with --model-arch or --model-factory"),
        ("transforms", "--transforms-of: 'Nope': not a torchvision weights name such as ResNet18_Weights"),
        ("no-data", "--data: required with --model-factory"),
    ],
)  # fmt: skip
def test_a_bad_foreign_model_is_one_line_naming_its_flag(
    case: str, expected: str, folder: Path, resnet_weights: Path, factory: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    data = ["--data", f"folder:{folder}", "--image-size", "32", "--out", str(tmp_path / "out")]
    arch = ["--model-arch", "resnet18", "--weights"]
    argv = {  # built lazily: only the case under test writes its weights file
        "arch": lambda: ["--model-arch", "resnet1", "--weights", str(resnet_weights), *data],
        "weights-file": lambda: [*arch, str(tmp_path / "none.pth"), *data],
        "missing": lambda: [*arch, str(_bad_weights(tmp_path, resnet_weights, "missing")), *data],
        "unexpected": lambda: [*arch, str(_bad_weights(tmp_path, resnet_weights, "unexpected")), *data],
        "shape": lambda: [*arch, str(_bad_weights(tmp_path, resnet_weights, "shape")), *data],
        "checkpoint": lambda: [*arch, str(_bad_weights(tmp_path, resnet_weights, "checkpoint")), *data],
        "factory-file": lambda: ["--model-factory", f"{tmp_path}/none.py:build", *data],
        "no-function": lambda: ["--model-factory", f"{factory}:nope", *data],
        "raises": lambda: ["--model-factory", f"{factory}:broken", *data],
        "not-a-module": lambda: ["--model-factory", f"{factory}:not_a_module", *data],
        "classes": lambda: ["--model-factory", f"{factory}:two_classes", *data],
        "no-weights": lambda: ["--model-arch", "resnet18", *data],
        "weights-with-resume": lambda: ["--resume", "ckpt.pth.tar", "--weights", str(resnet_weights)],
        "transforms": lambda: [*arch, str(resnet_weights), "--transforms-of", "Nope", *data],
        "no-data": lambda: ["--model-factory", f"{factory}:build"],
    }[case]()
    assert main(["attack", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    message = expected.format(tmp=tmp_path, factory=factory)
    assert err.startswith(f"visionlab: error: {message}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "--model-arch", "x", "--model-factory", "f.py:g"], "--model-factory: not with --model-arch"),
        (["saliency"], "--resume: required: a visionlab checkpoint (or --model-arch NAME --weights FILE, or "
                       "--model-factory FILE.py:FUNCTION)"),
        (["robustness", "--resume", "a", "--model-arch", "resnet18"], "--model-arch: not with --resume"),
        (["report", "runs/a", "--model-factory", "f.py:g", "--data", "x"], "RUN_DIR: not with --model-factory"),
        (["report", "runs/a", "--data", "x"], "--data: only with --model-arch / --model-factory"),
    ],
)  # fmt: skip
def test_model_flags_that_do_not_go_together_are_refused(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"visionlab: error: {expected}")


def test_the_library_error_names_its_input(tmp_path: Path) -> None:
    """The Python API raises the typed error whose field the CLI maps onto its flag."""
    with pytest.raises(ModelLoadError) as info:
        load_classifier(factory=f"{tmp_path}/none.py:build")
    assert (
        info.value.field == "factory"
        and str(info.value) == f"factory: {tmp_path}/none.py: no such file (from {tmp_path}/none.py:build)"
    )
