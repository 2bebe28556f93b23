"""The dataset-kinds table is the one source: each reader of it (the readers, ``parse_spec``, ``load_dataset``'s
size check, the configuration's size check, the command line's data flags, the model registry's default size)
agrees with it, kind by kind."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from visionlab.cli import CLIError, check_data_flags
from visionlab.data import (
    DATASET_KINDS,
    DEFAULT_IMAGE_SIZE,
    FASHION_MNIST_ALIASES,
    FILE_KINDS,
    IN_MEMORY_KINDS,
    DatasetError,
    TensorImageDataset,
    fixed_image_size,
    load_dataset,
    parse_spec,
)
from visionlab.engine import TrainConfig
from visionlab.errors import ConfigError
from visionlab.models import build_model

from .conftest import CifarSet, IdxSet


def test_the_table_its_partition_and_lookups() -> None:
    assert list(DATASET_KINDS) == ["miniplaces", "folder", "cifar10", "fashion-mnist"]
    assert FILE_KINDS == ("miniplaces", "folder") and IN_MEMORY_KINDS == ("cifar10", "fashion-mnist")
    assert FASHION_MNIST_ALIASES == ("fashion-mnist", "fashionmnist", "fmnist") and DEFAULT_IMAGE_SIZE == 128
    sizes = {spec: fixed_image_size(spec) for spec in (*DATASET_KINDS, *FASHION_MNIST_ALIASES, "imagenet")}
    assert sizes == {"miniplaces": None, "folder": None, "cifar10": 32, "fashion-mnist": 28, "fashionmnist": 28,
                     "fmnist": 28, "imagenet": None}  # fmt: skip
    assert all((kind.image_size is None) == (not kind.in_memory) for kind in DATASET_KINDS.values())


@pytest.fixture
def specs(miniplaces: Path, image_folder: Path, cifar10: CifarSet, fashion_mnist: IdxSet) -> dict[str, str]:
    """One on-disk dataset of every kind, as a ``kind:PATH`` spec."""
    roots = {
        "miniplaces": miniplaces,
        "folder": image_folder,
        "cifar10": cifar10.root,
        "fashion-mnist": fashion_mnist.root,
    }
    assert set(roots) == set(DATASET_KINDS)  # a new kind needs a fixture here
    return {kind: f"{kind}:{root}" for kind, root in roots.items()}


@pytest.mark.parametrize("name", list(DATASET_KINDS))
def test_each_reader_agrees_with_its_row(specs: dict[str, str], name: str) -> None:
    kind = DATASET_KINDS[name]
    assert parse_spec(specs[name]) == (name, specs[name].split(":", 1)[1])
    bundle = load_dataset(specs[name], check_images=False)
    assert bundle.kind == name and bundle.in_channels == kind.in_channels
    assert bundle.image_size == (kind.image_size or DEFAULT_IMAGE_SIZE)
    assert isinstance(bundle.train, TensorImageDataset) == kind.in_memory
    if kind.image_size is None:
        assert load_dataset(specs[name], image_size=40, check_images=False).image_size == 40
    else:
        with pytest.raises(DatasetError, match=rf"^{name} images are {kind.image_size}x{kind.image_size}: image size"):
            load_dataset(specs[name], image_size=kind.image_size + 1)
        assert load_dataset(specs[name], image_size=kind.image_size).image_size == kind.image_size


@pytest.mark.parametrize("spec", ["miniplaces:/d", "folder:/d", "cifar10:/d", *FASHION_MNIST_ALIASES])
def test_the_configuration_allows_exactly_the_fixed_size_of_its_kind(spec: str) -> None:
    fixed = fixed_image_size(spec.split(":", 1)[0])
    for size in (28, 32, 64):
        config = TrainConfig(data=spec, image_size=size)
        if fixed is None or size == fixed:
            config.validate()
        else:
            with pytest.raises(ConfigError, match=rf"images are {fixed}x{fixed}: must be {fixed} or unset, got {size}"):
                config.validate()


@pytest.mark.parametrize("name", list(DATASET_KINDS))
def test_the_command_line_refuses_workers_exactly_for_in_memory_kinds(specs: dict[str, str], name: str) -> None:
    check_data_flags(specs[name], workers=0)
    if DATASET_KINDS[name].in_memory:
        with pytest.raises(CLIError, match=r"is held in memory and batched without worker processes"):
            check_data_flags(specs[name], workers=1)
    else:
        check_data_flags(specs[name], workers=1)


def test_the_model_registry_defaults_to_the_data_default_size() -> None:
    assert inspect.signature(build_model).parameters["image_size"].default == DEFAULT_IMAGE_SIZE
