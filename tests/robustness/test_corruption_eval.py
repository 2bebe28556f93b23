"""Accuracy under corruption (visionlab.robustness.corruption_eval): equal to a hand loop over the same corrupted
batches, for a dataset (with or without worker processes) and for a loader; the corrupted batches and accuracies of
a dataset held in memory the same bit for bit for any number of worker processes and any batch size; several models
on images corrupted once, each with its own result alone; ImageNet-C's CE and relative CE on a hand-computed case;
the CSV, JSON and heat map written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from visionlab.data import BatchAugment, TensorImageDataset
from visionlab.data.transforms import to_float_transform
from visionlab.errors import ConfigError
from visionlab.robustness import (
    CORRUPTION_COLUMNS,
    corrupt,
    corrupted_batches,
    corruption_accuracies,
    corruption_accuracy,
    corruption_errors,
    plot_corruption_heatmap,
    write_corruptions,
)

from .conftest import tiny_model

CORRUPTIONS, SEVERITIES = ("gaussian_noise", "contrast"), (1, 5)


def _data(channels: int, n: int = 10) -> TensorDataset:
    gen = torch.Generator().manual_seed(channels)
    images = torch.rand(n, channels, 6, 6, generator=gen, dtype=torch.float64)
    return TensorDataset(images, torch.randint(0, 5, (n,), generator=gen))


def _hand_top1(model: torch.nn.Module, data: TensorDataset, corruption: str | None, severity: int) -> float:
    images, labels = data.tensors
    with torch.no_grad():
        predicted = model(corrupt(images, corruption, severity, seed=3)).argmax(1)
    return 100.0 * float((predicted == labels).double().mean())


@pytest.mark.parametrize("channels", [1, 3])
def test_accuracy_is_a_hand_loop_over_the_same_corrupted_images(channels: int) -> None:
    model, data = tiny_model(channels=channels), _data(channels)
    result = corruption_accuracy(model, data, CORRUPTIONS, SEVERITIES, seed=3, batch_size=4)
    assert result["n"] == 10 and result["clean_top1"] == pytest.approx(_hand_top1(model, data, None, 0))
    for c in CORRUPTIONS:
        assert result["top1"][c] == pytest.approx([_hand_top1(model, data, c, s) for s in SEVERITIES])
    assert result["mean_corruption_top1"] == pytest.approx(sum(sum(v) for v in result["top1"].values()) / 4)
    assert result["counts"]["clean"] == round(result["clean_top1"] / 10)


def test_a_loader_and_worker_processes_give_the_datasets_result() -> None:
    model, data = tiny_model(channels=3), _data(3)
    expected = corruption_accuracy(model, data, ["shot_noise"], [3], seed=1, batch_size=10)
    loader = DataLoader(data, batch_size=3)
    assert corruption_accuracy(model, loader, ["shot_noise"], [3], seed=1) == expected
    assert corruption_accuracy(model, data, ["shot_noise"], [3], seed=1, batch_size=4, workers=2) == expected


def _in_memory(channels: int, n: int = 12) -> Subset:
    """The first 10 of ``n`` uint8 images held in memory (served in batches by the trainer), as Fashion-MNIST and
    CIFAR-10 are, behind a Subset as ``--limit-val`` makes it."""
    gen = torch.Generator().manual_seed(channels)
    images = torch.randint(0, 256, (n, channels, 6, 6), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 5, (n,), generator=gen)
    dataset = TensorImageDataset(images, labels, to_float_transform(), in_memory=True, batch_augment=BatchAugment())
    return Subset(dataset, range(10))


@pytest.mark.parametrize("channels", [1, 3])
def test_the_corrupted_batches_of_data_in_memory_are_the_same_for_any_workers_and_batch_size(channels: int) -> None:
    data = _in_memory(channels)
    images = torch.stack([data[i][0] for i in range(10)])
    labels = torch.tensor([data[i][1] for i in range(10)])
    names = ("gaussian_noise", "impulse_noise", "frost")  # the library's, written here, the library's made faster
    expected = [(None, 0, images, labels)] + [(c, s, corrupt(images, c, s, seed=4), labels) for c in names
                                                for s in (2, 5)]  # fmt: skip
    for workers, batch_size in ((0, 4), (1, 3), (2, 4), (2, 10)):
        got = list(corrupted_batches(data, names, [2, 5], seed=4, batch_size=batch_size, workers=workers, clean=True))
        assert len(got) == 7 * -(-10 // batch_size)
        for k, (corruption, severity, x, y) in enumerate(expected):
            mine = got[k * len(got) // 7 : (k + 1) * len(got) // 7]
            assert {(c, s) for c, s, _, _ in mine} == {(corruption, severity)}
            assert torch.equal(torch.cat([b for _, _, b, _ in mine]), x), (workers, batch_size, corruption)
            assert torch.equal(torch.cat([b for _, _, _, b in mine]), y)


def test_worker_processes_give_the_same_accuracies_for_data_in_memory() -> None:
    models = {"a": tiny_model(channels=3).float(), "b": tiny_model(channels=3, seed=1, bn=True).float()}
    data = _in_memory(3)
    runs = [corruption_accuracies(models, data, ["shot_noise", "glass_blur"], [1, 4], seed=2, batch_size=3,
                                  workers=workers) for workers in (0, 1, 2)]  # fmt: skip
    assert runs[0] == runs[1] == runs[2] and runs[0]["a"] != runs[0]["b"]
    loader = DataLoader(data, batch_size=3)  # the same images and batches, corrupted in this process
    assert corruption_accuracies(models, loader, ["shot_noise", "glass_blur"], [1, 4], seed=2) == runs[0]


def test_the_models_modes_are_restored() -> None:
    model = tiny_model(channels=1, dropout=True).train()
    corruption_accuracy(model, _data(1), ["contrast"], [1])
    assert all(m.training for m in model.modules())


class Counted(Dataset):
    """``data`` counting the items read (each read is one image corrupted, in this process)."""

    def __init__(self, data: Dataset) -> None:
        self.data, self.reads = data, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        self.reads += 1
        return self.data[index]


@pytest.mark.parametrize("channels", [1, 3])
def test_several_models_get_their_own_results_from_images_corrupted_once(channels: int) -> None:
    models = {"a": tiny_model(channels=channels), "b": tiny_model(channels=channels, seed=1, bn=True)}
    data = Counted(_data(channels))
    together = corruption_accuracies(models, data, CORRUPTIONS, SEVERITIES, seed=3, batch_size=4)
    assert data.reads == 10 * (1 + 2 * 2)  # clean + 2 corruptions x 2 severities, once for both models
    alone = {name: corruption_accuracy(m, _data(channels), CORRUPTIONS, SEVERITIES, seed=3, batch_size=4)
             for name, m in models.items()}  # fmt: skip
    assert together == alone and together["a"] != together["b"]


def test_several_models_on_a_loader_and_no_model() -> None:
    models = {"a": tiny_model(channels=1), "b": tiny_model(channels=1, seed=2)}
    loader = DataLoader(_data(1), batch_size=3)
    together = corruption_accuracies(models, loader, ["fog"], [2], seed=1)
    assert together == {name: corruption_accuracy(m, loader, ["fog"], [2], seed=1) for name, m in models.items()}
    with pytest.raises(ConfigError, match="no model given") as error:
        corruption_accuracies({}, loader, ["fog"], [2])
    assert error.value.field == "models"


def test_every_models_modes_are_restored() -> None:
    models = {"a": tiny_model(channels=1, dropout=True).train(), "b": tiny_model(channels=1, bn=True)}
    corruption_accuracies(models, _data(1), ["contrast"], [1])
    assert all(m.training for m in models["a"].modules()) and not any(m.training for m in models["b"].modules())


def test_corruption_errors_on_a_hand_computed_case() -> None:
    """Model errors (%) 20/40 and 10/30 under a and b, clean 5; baseline 40/60 and 20/20, clean 10.
    CE_a = 60/100, CE_b = 40/40; RelCE_a = (15+35)/(30+50), RelCE_b = (5+25)/(10+10)."""
    result = {
        "corruptions": ["a", "b"],
        "severities": [1, 2],
        "clean_top1": 95.0,
        "top1": {"a": [80, 60], "b": [90, 70]},
    }
    base = {"corruptions": ["a", "b"], "severities": [1, 2], "clean_top1": 90.0, "top1": {"a": [60, 40], "b": [80, 80]}}
    errors = corruption_errors(result, base)
    assert errors["ce"] == pytest.approx({"a": 60.0, "b": 100.0})
    assert errors["mce"] == pytest.approx(80.0)
    assert errors["relative_ce"] == pytest.approx({"a": 62.5, "b": 150.0})
    assert errors["relative_mce"] == pytest.approx(106.25)


def test_a_baseline_that_loses_nothing_leaves_the_relative_error_undefined() -> None:
    result = {"corruptions": ["a"], "severities": [1], "clean_top1": 90.0, "top1": {"a": [80.0]}}
    base = {"corruptions": ["a"], "severities": [1], "clean_top1": 70.0, "top1": {"a": [70.0]}}
    errors = corruption_errors(result, base)
    assert errors["ce"]["a"] == pytest.approx(20 / 30 * 100)
    assert errors["relative_ce"] == {"a": None} and errors["relative_mce"] is None
    with pytest.raises(ValueError, match="different corruptions or severities"):
        corruption_errors(result, {**base, "severities": [2]})


def test_the_table_json_and_heat_map_are_written(tmp_path: Path) -> None:
    result = corruption_accuracy(tiny_model(channels=1), _data(1), CORRUPTIONS, SEVERITIES)
    csv_path, json_path = write_corruptions(result, tmp_path, "tiny")
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CORRUPTION_COLUMNS and len(rows) == 1 + 4
    assert rows[0]["corruption"] == "clean" and float(rows[0]["top1"]) == result["clean_top1"]
    assert [(r["corruption"], r["severity"]) for r in rows[1:3]] == [("gaussian_noise", "1"), ("gaussian_noise", "5")]
    assert rows[4]["baseline_top1"] == "" and float(rows[4]["top1"]) == result["top1"]["contrast"][1]
    assert json.loads(json_path.read_text()) == {"model": "tiny", **result}
    png = plot_corruption_heatmap(result, tmp_path / "heat.png", "tiny")
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 200
