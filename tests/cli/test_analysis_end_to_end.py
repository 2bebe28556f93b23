"""``visionlab saliency / attack / robustness`` and ``main.py -a / -e -v`` end to end on a tiny trained run."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, Subset

from visionlab.cli import main
from visionlab.engine import load_checkpoint, model_from_checkpoint
from visionlab.explain import TAG_ADVERSARIAL, TAG_ORIGINAL, TAG_SALIENCY
from visionlab.robustness import PGD, robust_evaluate

from ..conftest import make_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("visionlab_main_py_for_analysis", ROOT / "main.py")
main_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(main_py)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SimpleNet trained 2 epochs on a tiny Fashion-MNIST-format set: ``(data spec, model_best path)``."""
    root = tmp_path_factory.mktemp("analysis")
    data = f"fashion-mnist:{make_fashion_mnist(root / 'fm', n_train=160, n_test=48)}"
    argv = ["train", "--data", data, "--epochs", "2", "-b", "32", "-j", "0", "--out", str(root / "run"),
            "--no-progress", "--no-tensorboard", "--lr", "0.003", "--optimizer", "adamw"]  # fmt: skip
    assert main(argv) == 0
    return data, root / "run" / "model_best.pth.tar"


def _tags(directory: Path) -> set[str]:
    events = EventAccumulator(str(directory))
    events.Reload()
    return set(events.Tags()["images"])


def test_attack_json_equals_the_library_and_robust_is_below_clean(
    trained: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, best = trained
    argv = ["attack", "--resume", str(best), "--eps", "0.1", "--steps", "5", "--no-random-start", "--json",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"clean_top1", "robust_top1", "robust_top5", "n", "attack"} and result["n"] == 48
    assert result["attack"]["steps"] == 5 and result["attack"]["eps"] == 0.1

    state = load_checkpoint(best)
    model = model_from_checkpoint(state).eval()
    from visionlab.data import load_dataset

    val = load_dataset(state["config"]["data"]).val
    expected = robust_evaluate(model, DataLoader(val, batch_size=250), PGD(model, 0.1, 0.05, 5, random_start=False),
                               "cpu")  # fmt: skip  # the default step, 2.5 eps / steps
    assert (result["clean_top1"], result["robust_top1"]) == (expected["clean_top1"], expected["robust_top1"])
    assert result["robust_top1"] <= result["clean_top1"]


def test_attack_vis_writes_grids_and_tensorboard_images(trained: tuple[str, Path], tmp_path: Path) -> None:
    _, best = trained
    out = tmp_path / "atk"
    argv = ["attack", "--resume", str(best), "--attack", "fgsm", "--limit-val", "16", "-v", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    for name in ("original.png", "adversarial.png", "difference.png"):
        with Image.open(out / name) as img:
            assert img.size == (10 * 30 + 2, 2 * 30 + 2)  # 20 images of 28 px, 10 per row, 2 px padding
    original = np.asarray(Image.open(out / "original.png"), dtype=np.float64)
    adversarial = np.asarray(Image.open(out / "adversarial.png"), dtype=np.float64)
    assert 0 < np.abs(original - adversarial).max() <= 0.1 * 255 + 1  # an L∞ ball of 0.1, 8-bit rounding
    assert _tags(out / "tensorboard") >= {TAG_ORIGINAL, TAG_ADVERSARIAL}


def test_saliency_command_writes_the_original_overlay(trained: tuple[str, Path], tmp_path: Path) -> None:
    _, best = trained
    out = tmp_path / "sal"
    assert main(["saliency", "--resume", str(best), "--num", "12", "--out", str(out), "--no-progress"]) == 0
    for name in ("images.png", "saliency.png", "saliency_heatmap.png"):
        with Image.open(out / name) as img:
            assert img.size == (10 * 30 + 2, 2 * 30 + 2)
    overlay = np.asarray(Image.open(out / "saliency.png").convert("RGB"), dtype=np.int64)
    red_only = (overlay[..., 0] == 255) & (overlay[..., 1] < 255)
    assert red_only.any()  # some pixels exceed twice their image's mean saliency and were lifted to red
    assert _tags(out / "tensorboard") == {TAG_SALIENCY}


def test_robustness_sweep_of_two_checkpoints(trained: tuple[str, Path], tmp_path: Path) -> None:
    _, best = trained
    out = tmp_path / "sweep"
    argv = ["robustness", "--resume", str(best), str(best), "--labels", "a", "b", "--eps", "0", "0.05", "--steps",
            "1", "3", "--limit-val", "16", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 8 and {r["model"] for r in rows} == {"a", "b"}
    eps0 = [r for r in rows if r["sweep"] == "eps" and float(r["eps"]) == 0.0]
    assert all(r["robust_top1"] == r["clean_top1"] for r in eps0)  # eps 0 attacks nothing
    assert all((out / f).is_file() for f in ("sweep.json", "accuracy_vs_eps.png", "accuracy_vs_steps.png"))


def test_robustness_without_out_writes_the_comparison_into_every_run_once(
    trained: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, best = trained
    runs = [tmp_path / "run-a", tmp_path / "run-b"]
    for run in runs:
        run.mkdir()
        shutil.copy(best, run / "model_best.pth.tar")
    resume = [runs[0] / "model_best.pth.tar", runs[1] / "model_best.pth.tar", runs[1] / "." / "model_best.pth.tar"]
    argv = ["robustness", "--resume", *map(str, resume), "--eps", "0", "--steps", "1", "--limit-val", "8",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    tables = [json.loads((run / "robustness" / "sweep.json").read_text()) for run in runs]
    assert tables[0] == tables[1]  # each run holds the whole comparison
    assert [r["model"] for r in tables[0]] == ["run-a"] * 2 + ["run-b"] * 4
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 8  # sweep.csv, sweep.json and two plots in each of the two runs: run-b once


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "-0.1"], "--eps: "),
        (["--eps", "2"], "--eps: "),
        (["--steps", "0"], "--steps: "),
        (["--restarts", "3", "--no-random-start"], "--restarts: "),
        (["--limit-val", "0"], "--limit-val: "),
    ],
)
def test_bad_attack_settings_are_one_line_exit_2(
    trained: tuple[str, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, best = trained
    assert main(["attack", "--resume", str(best), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"visionlab: error: {message}")


def test_unknown_attack_and_another_datasets_checkpoint(
    trained: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, best = trained
    with pytest.raises(SystemExit) as info:
        main(["attack", "--resume", str(best), "--attack", "cw"])
    assert info.value.code == 2
    root = tmp_path / "three"
    for split in ("train", "val"):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / c / "x.png")
    capsys.readouterr()
    assert main(["attack", "--resume", str(best), "--data", f"folder:{root}", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 classes" in err[0] and "10" in err[0]


def test_main_py_attack_and_eval_vis(trained: tuple[str, Path], tmp_path: Path, capsys) -> None:
    data, best = trained
    out = tmp_path / "orig"
    assert main_py.main([data, "--resume", str(best), "-a", "-v", "--gpu", "-1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("PGD(") and "targeted='least-likely'" in lines[0]
    assert lines[-1].startswith("* under attack Acc@1")
    assert (out / "adversarial.png").is_file()
    assert main_py.main([data, "--resume", str(best), "-e", "-v", "--gpu", "-1", "-j", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "* Acc@1" in printed and (out / "saliency.png").is_file()
    assert main_py.main([data, "-v", "--gpu", "-1"]) == 2


def test_original_attack_translation_is_per_channel_std(trained: tuple[str, Path]) -> None:
    _, best = trained
    model = model_from_checkpoint(load_checkpoint(best))
    from visionlab.robustness import original_attack

    attack = original_attack(model)
    std = model.normalize.std.flatten().tolist()
    settings = attack.settings()
    assert settings["eps"] == pytest.approx([0.1 * s for s in std]) or settings["eps"] == pytest.approx(0.1 * std[0])
    assert settings["steps"] == 10 and settings["random_start"] is False and settings["targeted"] == "least-likely"
    x = torch.rand(4, 1, 28, 28)
    delta = (attack(x, torch.zeros(4, dtype=torch.long)) - x).abs().max().item()
    assert delta <= 0.1 * std[0] + 1e-6


def test_adversarial_training_selects_model_best_by_robust_accuracy(tmp_path: Path) -> None:
    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', n_train=96, n_test=32)}"
    run = tmp_path / "at"
    argv = ["train", "--data", data, "--epochs", "3", "-b", "16", "-j", "0", "--out", str(run), "--no-progress",
            "--no-tensorboard", "--lr", "0.003", "--optimizer", "adamw", "--adv-train", "fgsm-rs", "--adv-eps", "0.1",
            "--select-by", "robust", "--robust-val", "16"]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    robust = [r["val_robust_top1"] for r in epochs]
    assert all("catastrophic_overfitting" in r for r in epochs)
    best = load_checkpoint(run / "model_best.pth.tar")
    assert best["epoch"] == robust.index(max(robust))  # the first epoch of the best robust accuracy
    assert best["best_robust_top1"] == max(robust)

    model = model_from_checkpoint(best).eval()
    from visionlab.data import load_dataset

    val = Subset(load_dataset(data).val, range(16))
    again = robust_evaluate(model, DataLoader(val, batch_size=16), PGD(model, 0.1, 0.025, 10, random_start=False),
                            "cpu")  # fmt: skip
    assert again["robust_top1"] == max(robust)  # the monitor's number is PGD-10, step eps/4, no random start
