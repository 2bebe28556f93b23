"""Datasets (Fashion-MNIST, MiniPlaces, ImageFolder, CIFAR-10), transforms, fetching, and a synthetic MiniPlaces."""

from visionlab.data.datasets import (
    FASHION_MNIST_CLASSES,
    DataBundle,
    ImageListDataset,
    load_dataset,
    parse_spec,
    read_cifar10,
    read_idx,
    verify_images,
)
from visionlab.data.decode import ImageCache, ImageDecodeError, jpeg_size, read_image
from visionlab.data.device_augment import DeviceAugmentLoader, DeviceAugmentSource, augment_batch, draw_params
from visionlab.data.fetch import (
    DatasetError,
    default_data_root,
    fetch_fashion_mnist,
    fetch_miniplaces,
    verify_fashion_mnist,
)
from visionlab.data.kinds import (
    DATASET_KINDS,
    DEFAULT_IMAGE_SIZE,
    FASHION_MNIST_ALIASES,
    FILE_KINDS,
    IN_MEMORY_KINDS,
    DatasetKind,
    fixed_image_size,
)
from visionlab.data.labels import SHUFFLABLE, dataset_labels, shuffle_labels
from visionlab.data.lists import ListEntry, parse_list_file
from visionlab.data.memory import BatchAugment, InMemoryLoader, TensorImageDataset, in_memory_source
from visionlab.data.noise import (
    GAUSSIAN_NOISE_SCALES,
    IMPULSE_NOISE_AMOUNTS,
    NOISE_CORRUPTIONS,
    SHOT_NOISE_RATES,
    noise_augment,
)
from visionlab.data.synth import synth_batch, synth_miniplaces
from visionlab.data.transforms import eval_transform, train_transform

__all__ = [
    "DATASET_KINDS",
    "DEFAULT_IMAGE_SIZE",
    "FASHION_MNIST_ALIASES",
    "FASHION_MNIST_CLASSES",
    "FILE_KINDS",
    "GAUSSIAN_NOISE_SCALES",
    "IMPULSE_NOISE_AMOUNTS",
    "IN_MEMORY_KINDS",
    "NOISE_CORRUPTIONS",
    "SHOT_NOISE_RATES",
    "SHUFFLABLE",
    "BatchAugment",
    "DataBundle",
    "DatasetError",
    "DatasetKind",
    "DeviceAugmentLoader",
    "DeviceAugmentSource",
    "ImageCache",
    "ImageDecodeError",
    "ImageListDataset",
    "InMemoryLoader",
    "ListEntry",
    "TensorImageDataset",
    "augment_batch",
    "dataset_labels",
    "default_data_root",
    "draw_params",
    "eval_transform",
    "fetch_fashion_mnist",
    "fetch_miniplaces",
    "fixed_image_size",
    "in_memory_source",
    "jpeg_size",
    "load_dataset",
    "noise_augment",
    "parse_list_file",
    "parse_spec",
    "read_cifar10",
    "read_idx",
    "read_image",
    "shuffle_labels",
    "synth_batch",
    "synth_miniplaces",
    "train_transform",
    "verify_fashion_mnist",
    "verify_images",
]
