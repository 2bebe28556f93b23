"""``shuffle_labels``: the trainer trains on the training labels permuted once by ``torch.randperm`` seeded with the
run's seed (class counts kept), validates on the true labels, draws the same data order as without it, resumes
exactly, and refuses by name a dataset whose labels it cannot reach; the flag maps onto the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from visionlab.cli import main
from visionlab.cli.common import format_user_error
from visionlab.data import dataset_labels, in_memory_source, load_dataset
from visionlab.engine import CHECKPOINT, Trainer, load_checkpoint
from visionlab.errors import ConfigError

from ..conftest import Stop, StopAt
from .builders import TRAIN_LABELS, VAL, built_trainer, file_config, memory_bundle, memory_config


def _batches(trainer: Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in trainer.train_loader]


def test_the_training_labels_are_the_seeded_permutation_and_validation_keeps_the_true_ones(tmp_path: Path) -> None:
    true = torch.tensor(TRAIN_LABELS)
    trainer = built_trainer(memory_config(tmp_path / "run", shuffle_labels=True, seed=11))
    trained_on = dataset_labels(trainer.train_loader.dataset)
    assert trained_on.tolist() == true[torch.randperm(96, generator=torch.Generator().manual_seed(11))].tolist()
    assert trained_on.tolist() != TRAIN_LABELS
    assert torch.bincount(trained_on).tolist() == torch.bincount(true).tolist()
    assert dataset_labels(trainer.val_loader.dataset).tolist() == VAL
    assert dataset_labels(trainer.bundle.train).tolist() == TRAIN_LABELS  # the bundle itself is unchanged


def test_the_same_images_in_the_same_order_as_without_it_only_the_labels_differ(
    tiny_fmnist: str, tmp_path: Path
) -> None:
    plain = Trainer(file_config(tiny_fmnist, tmp_path / "a", limit_train=64), callbacks=[])
    shuffled = Trainer(file_config(tiny_fmnist, tmp_path / "b", limit_train=64, shuffle_labels=True), callbacks=[])
    plain.log.close()
    shuffled.log.close()
    source = in_memory_source(shuffled.train_loader.dataset)
    assert source is not None  # still served in whole batches
    true = load_dataset(tiny_fmnist).train.labels[:64]
    assert source[1].tolist() == true[torch.randperm(64, generator=torch.Generator().manual_seed(7))].tolist()
    a, b = _batches(plain), _batches(shuffled)
    assert len(a) == len(b) and all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b, strict=True))
    ya, yb = torch.cat([y for _, y in a]), torch.cat([y for _, y in b])
    assert not torch.equal(ya, yb) and torch.equal(ya.sort().values, yb.sort().values)


def test_a_resumed_random_label_run_ends_with_identical_weights(tiny_fmnist: str, tmp_path: Path) -> None:
    reference = Trainer(file_config(tiny_fmnist, tmp_path / "ref", shuffle_labels=True), callbacks=[])
    reference.fit()
    with pytest.raises(Stop):  # 96 images / 16 = 6 steps per epoch: the 4th step of epoch 2
        Trainer(file_config(tiny_fmnist, tmp_path / "run", shuffle_labels=True), task=StopAt(10), callbacks=[]).fit()
    resumed = Trainer(file_config(tiny_fmnist, tmp_path / "run", shuffle_labels=True),
                      resume=tmp_path / "run" / CHECKPOINT, callbacks=[])  # fmt: skip
    assert resumed.start_epoch == 1 and resumed.cfg.shuffle_labels
    resumed.fit()
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["config"]["shuffle_labels"] is True


def test_a_dataset_whose_labels_cannot_be_reached_is_refused_naming_the_field(tmp_path: Path) -> None:
    class Stream(Dataset):
        def __len__(self) -> int:
            return 96

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(1, 28, 28), i % 10

    bundle = memory_bundle(TRAIN_LABELS, VAL)
    bundle.train = Stream()
    with pytest.raises(ConfigError, match=r"cannot permute the labels of a Stream") as info:
        Trainer(memory_config(tmp_path / "run", shuffle_labels=True), bundle=bundle, callbacks=[])
    assert info.value.field == "shuffle_labels"


def test_the_flag_sets_the_field_and_a_bad_value_names_the_flag(tiny_fmnist: str, tmp_path: Path) -> None:
    argv = ["train", "--data", tiny_fmnist, "--epochs", "1", "-b", "32", "--lr", "0.05", "-j", "0", "--no-progress",
            "--no-tensorboard", "--seed", "2"]  # fmt: skip
    assert main([*argv, "--random-labels", "--out", str(tmp_path / "run")]) == 0
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["config"]["shuffle_labels"] is True
    with pytest.raises(ConfigError, match="must be true or false") as info:
        memory_config(None, shuffle_labels="yes").validate()
    assert format_user_error(info.value).startswith("--shuffle-labels: must be true or false")
