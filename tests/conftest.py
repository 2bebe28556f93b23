"""Shared fixtures: tiny datasets in the real on-disk formats, generated ResNet-18 weights, and tiny real runs
(trained, attacked, explained and swept) for the report tests and ``visionlab report``'s."""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from visionlab.cli import main
from visionlab.engine import ClassificationTask
from visionlab.runtime.distributed import DistContext

from . import statistical


def pytest_addoption(parser: pytest.Parser) -> None:
    statistical.add_options(parser)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    statistical.parametrize(metafunc)


@pytest.fixture
def stat(request: pytest.FixtureRequest, stat_seed: int) -> statistical.Statistic:
    """Checks (or, under ``--stat-out``, records) a statistical test's quantities: tests/statistical.py."""
    return statistical.fixture(request, stat_seed)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core) each worker computes on one thread, and so do
    the processes its tests start: two workers with two intra-op threads each on two cores slow each other by
    far more than they gain (busy-waiting threads)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# Files whose tests start processes of their own (torchrun, DDP worlds of two) and take 5-20 s each: collected
# first, so that under pytest-xdist they start at once beside the many short tests instead of running alone at
# the end while the other worker idles.
_SLOW_FIRST = ("tests/cli/test_torchrun.py", "tests/engine/test_ddp_training.py")


# Session fixtures that cost seconds to build (tiny_runs trains two runs and attacks one: ~3 s): their users are
# collected next to each other, so that pytest-xdist's first split gives them to one worker, which builds the
# fixture once, instead of both workers building it.
_SHARED_SESSION_FIXTURES = ("tiny_runs",)


def _collection_rank(item: pytest.Item) -> int:
    if item.nodeid.startswith(_SLOW_FIRST):
        return 0
    return 1 if any(name in item.fixturenames for name in _SHARED_SESSION_FIXTURES) else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_collection_rank)  # stable: otherwise in collection order


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file, the Fashion-MNIST on-disk format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, n_train: int = 96, n_test: int = 48, seed: int = 0) -> Path:
    """Fashion-MNIST-format IDX files whose class is visible in the pixels (a bright row at 2*label), so a
    model can learn it within a few steps."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4, :] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> str:
    """A dataset spec for a tiny Fashion-MNIST-format directory (96 train / 48 test images)."""
    return f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fmnist')}"


class IdentityWorld(DistContext):
    """A world of ``world_size`` ranks without a process group: every collective is the identity (what one rank
    would get if all ranks held the same values), ``wrap`` returns the model unwrapped. Tests subclass it to
    record what the trainer hands the collectives."""

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj] * self.world_size

    def barrier(self) -> None:
        pass

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return model


def mixed_model() -> torch.nn.Sequential:
    """A training head over a backbone frozen in eval mode: the mixed state ``model.train(flag)`` would lose."""
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Dropout(0.5)), torch.nn.Linear(3, 2)
    ).train()
    model[0].eval()
    return model


def train_flags(model: torch.nn.Module) -> list[bool]:
    """Each module's training flag, in ``modules()`` order."""
    return [m.training for m in model.modules()]


class Stop(Exception):
    """Raised by :class:`StopAt`: a run killed in the middle of an epoch."""


class StopAt(ClassificationTask):
    """The plain objective, raising :class:`Stop` at its n-th call (1-based), like a kill mid-epoch."""

    def __init__(self, n: int) -> None:
        super().__init__(torch.nn.CrossEntropyLoss())
        self.n, self.calls = n, 0

    def __call__(self, model, images, target):
        self.calls += 1
        if self.calls == self.n:
            raise Stop
        return super().__call__(model, images, target)


@pytest.fixture(scope="session")
def resnet18_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet-18 state dict (1000 classes, random weights, fixed seed) saved as ``torch.save``
    writes it: a stand-in for the ImageNet file, generated, never downloaded."""
    import torchvision

    torch.manual_seed(1234)
    net = torchvision.models.resnet18(weights=None)
    for m in net.modules():  # non-trivial batch-norm statistics, so copying them is visible
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18-generated.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: ``$TORCH_HOME`` points into ``tmp_path``; returns its ``checkpoints`` folder."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


@pytest.fixture
def cached_imagenet_resnet18(hub_cache: Path, resnet18_state_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The generated ResNet-18 file placed in the hub cache under torchvision's name (``resnet18-f37072fd.pth``),
    with the expected SHA-256 prefix patched to the generated file's (the real prefix is the real file's)."""
    import hashlib

    from visionlab.models import pretrained

    hub_cache.mkdir(parents=True, exist_ok=True)
    path = hub_cache / pretrained.imagenet_weights_path("resnet18").name
    path.symlink_to(resnet18_state_file)
    digest = hashlib.sha256(resnet18_state_file.read_bytes()).hexdigest()
    monkeypatch.setattr(pretrained, "imagenet_sha256_prefix", lambda model="resnet18": digest[:8])
    return path


# Tiny real runs for the report tests (tests/report) and visionlab report's (tests/cli/test_report.py): SimpleNet
# trained one epoch on a few hundred generated Fashion-MNIST-format images, once with the native and once with the
# custom convolution, plus the outputs of ``visionlab attack -v``, ``visionlab saliency``, ``visionlab explain --sanity
# --faithfulness``, ``visionlab robustness``, ``visionlab corruptions`` and ``visionlab certify`` for the first.
@dataclass
class TinyRuns:
    data: str  # the dataset spec both runs were trained on
    native: Path  # run directory with every artefact
    custom: Path  # the same run with --use-custom-conv, no artefacts


def _train_tiny_run(data: str, out: Path, *extra: str) -> None:
    argv = ["train", "--data", data, "--epochs", "1", "-b", "32", "-j", "0", "--out", str(out), "--no-progress",
            "--no-tensorboard", "--lr", "0.003", "--optimizer", "adamw", "--warmup", "0", *extra]  # fmt: skip
    assert main(argv) == 0


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    """The two runs and their artefacts, made once per session (once per pytest-xdist worker that needs them)."""
    root = tmp_path_factory.mktemp("report-runs")
    data = f"fashion-mnist:{make_fashion_mnist(root / 'fm', n_train=256, n_test=64)}"
    native, custom = root / "native", root / "custom"
    _train_tiny_run(data, native)
    _train_tiny_run(data, custom, "--use-custom-conv")
    best = str(native / "model_best.pth.tar")
    quiet = "--no-progress"
    assert main(["attack", "--resume", best, "--eps", "0.1", "--steps", "2", "--limit-val", "32", "-v", quiet]) == 0
    assert main(["saliency", "--resume", best, "--num", "10", quiet]) == 0
    checks = ["--sanity", "--faithfulness", "--subset", "6", "--curve-steps", "4"]
    assert main(["explain", "--resume", best, "--num", "4", "--ig-steps", "4", "--smoothgrad-samples", "2", *checks,
                 quiet]) == 0  # fmt: skip
    sweep = ["--eps", "0", "0.1", "--steps", "1", "2", "--limit-val", "16"]
    assert main(["robustness", "--resume", best, *sweep, quiet]) == 0
    assert main(["corruptions", "--resume", best, "--corruptions", "fog", "--severities", "2", "--limit-val", "8",
                 "--json", quiet]) == 0  # fmt: skip
    smoothing = ["--sigma", "0.12", "--n0", "10", "--n", "50", "--limit-val", "8"]
    assert main(["certify", "--resume", best, *smoothing, quiet]) == 0
    return TinyRuns(data, native, custom)
