"""Every script in ``examples/`` runs as ``python examples/NAME.py ...`` would run it (in this process, for speed), on
tiny generated data in the real on-disk format, and produces what its docstring says. A script added to
``examples/`` without a case here fails :func:`test_every_example_has_a_case`."""

from __future__ import annotations

import re
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """Run ``examples/NAME`` as ``__main__`` with ``argv``; return what it printed."""
    path = EXAMPLES / name
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    capsys.readouterr()
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


@dataclass
class Case:
    """How one example runs on tiny data (``{data}``: a tiny Fashion-MNIST spec, ``{out}``: a fresh folder,
    ``{run}``: a run directory trained by adversarial_training.py) and what it must have produced."""

    argv: list[str]
    check: Callable[[str, Path], None]


def check_attack(out: str, folder: Path) -> None:
    match = re.fullmatch(r"PGD\(.*steps=2.*\): clean top-1 ([\d.]+)%, robust top-1 ([\d.]+)%\n", out)
    assert match, out
    clean, robust = map(float, match.groups())
    assert 0.0 <= robust <= clean <= 100.0


def check_saliency(out: str, folder: Path) -> None:
    assert out == f"wrote {folder / 'saliency.png'}\nwrote {folder / 'smoothgrad.png'}\n"
    for name in ("saliency.png", "smoothgrad.png"):
        with Image.open(folder / name) as png:  # 20 images of 28 px, 10 per row, 2 px apart
            assert (png.format, png.size) == ("PNG", (10 * 30 + 2, 2 * 30 + 2))


def check_training(out: str, folder: Path) -> None:
    assert re.fullmatch(r"last epoch: val top-1 [\d.]+%, PGD-10 top-1 [\d.]+%; best PGD-10 top-1 [\d.]+% in .*\n", out)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert (config["adv_train"], config["adv_eps"], config["epochs"], config["select_by"]) == ("pgd", 0.1, 2, "robust")
    epochs = [line for line in (folder / "metrics.jsonl").read_text().splitlines() if '"type": "epoch"' in line]
    assert len(epochs) == 2 and all('"val_robust_top1"' in line for line in epochs)
    assert (folder / "model_best.pth.tar").is_file()


def check_report(out: str, folder: Path) -> None:
    page = folder / "report.html"
    assert out == f"wrote {page}\n"
    html = page.read_text(encoding="utf-8")
    # The checkpoint was evaluated: the saliency section holds the maps analyse computed, no model section says why
    # it is missing.
    saliency = html.split('id="saliency-h"')[1].split('id="adversarial-h"')[0]
    assert "data:image/png;base64," in saliency
    assert "could not evaluate" not in html and "no checkpoint in" not in html


CASES = {
    "attack_torchvision.py": Case(["--data", "{data}", "--limit", "16", "--steps", "2"], check_attack),
    "saliency_custom_module.py": Case(["--data", "{data}", "--steps", "3", "--out", "{out}"], check_saliency),
    "adversarial_training.py": Case(
        ["--data", "{data}", "--epochs", "2", "--limit", "32", "--out", "{out}"], check_training
    ),
    "report_from_python.py": Case(["{run}", "--limit", "16", "--out", "{out}/report.html"], check_report),
}


def test_every_example_has_a_case() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_on_tiny_data(
    name: str, tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    data = tiny_fmnist
    out = tmp_path / "out"
    run = ""
    if "{run}" in CASES[name].argv:  # a run directory to report on, trained by the training example
        run = str(tmp_path / "run")
        argv = ["--data", data, "--epochs", "1", "--limit", "16", "--out", run]
        run_example("adversarial_training.py", argv, monkeypatch, capsys)
    argv = [a.format(data=data, out=out, run=run) for a in CASES[name].argv]
    torch.manual_seed(0)
    CASES[name].check(run_example(name, argv, monkeypatch, capsys), out)


def test_each_example_says_what_it_shows_and_how_to_run_it() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        doc = (runpy.run_path(str(path), run_name="example").get("__doc__") or "").strip()
        assert doc, f"{path.name}: no module docstring"
        assert f"python examples/{path.name}" in doc, f"{path.name}: its docstring does not say how to run it"
