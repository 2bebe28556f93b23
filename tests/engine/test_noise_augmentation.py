"""``--augment noise=P`` (ImageNet-C's noise corruptions as training augmentation, visionlab.data.noise): a run
killed in its second epoch and resumed ends with the very weights of one never stopped (the noise is drawn from the
trainer's data generator, which checkpoints capture), the noise changes the run, and a bad probability is one line
naming --augment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.cli import main
from visionlab.data import BatchAugment
from visionlab.engine import CHECKPOINT, Trainer

from ..conftest import Stop, StopAt
from .builders import file_config

AUGMENT = "flip,crop=2,noise=0.5"


def test_noise_augmentation_killed_and_resumed_ends_with_identical_weights(tiny_fmnist: str, tmp_path: Path) -> None:
    reference = Trainer(file_config(tiny_fmnist, tmp_path / "ref", augment=AUGMENT), callbacks=[])
    assert reference.train_loader.augment == BatchAugment(flip=True, pad=2, noise=0.5)
    reference.fit()

    # 96 images / batch 16 = 6 steps per epoch: crash at the 4th step of epoch 2 (call 10).
    with pytest.raises(Stop):
        Trainer(file_config(tiny_fmnist, tmp_path / "run", augment=AUGMENT), task=StopAt(10), callbacks=[]).fit()
    resumed = Trainer(file_config(tiny_fmnist, tmp_path / "run", augment=AUGMENT), resume=tmp_path / "run" / CHECKPOINT,
                      callbacks=[])  # fmt: skip
    assert resumed.start_epoch == 1 and resumed.cfg.augment == AUGMENT
    resumed.fit()
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The noise matters: the same run without it ends elsewhere.
    plain = Trainer(file_config(tiny_fmnist, tmp_path / "plain", augment="flip,crop=2"), callbacks=[])
    plain.fit()
    assert not all(torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                     reference.model.state_dict().values(), strict=True))  # fmt: skip


@pytest.mark.parametrize("spec", ["noise=0", "flip,noise=2", "noise"])
def test_a_bad_noise_probability_is_one_line_naming_augment(
    spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path / "run"), "--augment", spec]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    bad = spec.split(",")[-1]
    assert err == [f"visionlab: error: --augment: {bad!r} in {spec!r}: expected 'none' or comma-separated flip, "
                   "crop=PAD (1-64 px), erase=P (0 < P <= 1), noise=P (0 < P <= 1)"]  # fmt: skip
    assert not (tmp_path / "run").exists()
