"""``--noise-sigma``: Gaussian data augmentation (Cohen et al. 2019) built from the configuration, refused beside
adversarial training, and resumed exactly: a run killed in its second epoch and resumed ends with the very weights
of one never stopped (the noise is drawn from the global RNG, which checkpoints capture)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.cli import main
from visionlab.engine import CHECKPOINT, TrainConfig, Trainer, build_task
from visionlab.errors import ConfigError
from visionlab.robustness import GaussianNoiseTraining

from ..conftest import Stop
from .builders import file_config


def test_noise_sigma_builds_gaussian_noise_training_with_the_configured_loss() -> None:
    task = build_task(TrainConfig(noise_sigma=0.25, label_smoothing=0.1))
    assert type(task) is GaussianNoiseTraining and task.sigma == 0.25 and task.generator is None
    assert isinstance(task.criterion, nn.CrossEntropyLoss) and task.criterion.label_smoothing == 0.1


def test_noise_sigma_with_adversarial_training_is_refused() -> None:
    for call in (lambda cfg: cfg.validate(), build_task):
        with pytest.raises(ConfigError, match="not with adv_train") as info:
            call(TrainConfig(noise_sigma=0.25, adv_train="pgd"))
        assert info.value.field == "noise_sigma"


def test_the_command_line_refuses_a_bad_sigma_and_the_combination_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, line in (
        (["--noise-sigma", "0"], "visionlab: error: --noise-sigma: must be a number > 0, got 0.0"),
        (["--noise-sigma", "0.25", "--adv-train", "pgd"], "visionlab: error: --noise-sigma: not with adv_train"),
    ):
        assert main(["train", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(line), err
    assert not (tmp_path / "run").exists()


def test_noise_training_killed_and_resumed_ends_with_identical_weights(tiny_fmnist: str, tmp_path: Path) -> None:
    reference = Trainer(file_config(tiny_fmnist, tmp_path / "ref", noise_sigma=0.5), callbacks=[])
    assert isinstance(reference.task, GaussianNoiseTraining)
    reference.fit()

    stopped = Trainer(file_config(tiny_fmnist, tmp_path / "run", noise_sigma=0.5), callbacks=[])
    calls, task = {"n": 0}, stopped.task

    def stop_in_epoch_two(model, images, target):  # 96 images / 16 = 6 steps per epoch: the 4th step of epoch 1
        calls["n"] += 1
        if calls["n"] == 10:
            raise Stop
        return task(model, images, target)

    stopped.task = stop_in_epoch_two
    with pytest.raises(Stop):
        stopped.fit()
    resumed = Trainer(file_config(tiny_fmnist, tmp_path / "run", noise_sigma=0.5), resume=tmp_path / "run" / CHECKPOINT,
                      callbacks=[])  # fmt: skip
    assert resumed.start_epoch == 1 and resumed.cfg.noise_sigma == 0.5
    resumed.fit()
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The noise matters: the same run without it ends elsewhere.
    plain = Trainer(file_config(tiny_fmnist, tmp_path / "plain"), callbacks=[])
    plain.fit()
    assert not all(torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                     reference.model.state_dict().values(), strict=True))  # fmt: skip
