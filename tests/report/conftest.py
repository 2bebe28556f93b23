"""Tiny real runs for the report tests: SimpleNet trained one epoch on a few hundred generated Fashion-MNIST-format
images, once with the native and once with the custom convolution, plus the outputs of ``visionlab attack -v``,
``visionlab saliency`` and ``visionlab robustness`` for the first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from visionlab.cli import main

from ..conftest import make_fashion_mnist


@dataclass
class TinyRuns:
    data: str  # the dataset spec both runs were trained on
    native: Path  # run directory with every artefact
    custom: Path  # the same run with --use-custom-conv, no artefacts


def _train(data: str, out: Path, *extra: str) -> None:
    argv = ["train", "--data", data, "--epochs", "1", "-b", "32", "-j", "0", "--out", str(out), "--no-progress",
            "--no-tensorboard", "--lr", "0.003", "--optimizer", "adamw", "--warmup", "0", *extra]  # fmt: skip
    assert main(argv) == 0


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    root = tmp_path_factory.mktemp("report-runs")
    data = f"fashion-mnist:{make_fashion_mnist(root / 'fm', n_train=256, n_test=64)}"
    native, custom = root / "native", root / "custom"
    _train(data, native)
    _train(data, custom, "--use-custom-conv")
    best = str(native / "model_best.pth.tar")
    quiet = "--no-progress"
    assert main(["attack", "--resume", best, "--eps", "0.1", "--steps", "2", "--limit-val", "32", "-v", quiet]) == 0
    assert main(["saliency", "--resume", best, "--num", "10", quiet]) == 0
    sweep = ["--eps", "0", "0.1", "--steps", "1", "2", "--limit-val", "16"]
    assert main(["robustness", "--resume", best, *sweep, quiet]) == 0
    return TinyRuns(data, native, custom)
