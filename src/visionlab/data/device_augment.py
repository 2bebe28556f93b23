"""The MiniPlaces training augmentation on the device, batched: DataLoader workers only decode (or only read the
file) and draw each image's random parameters; the main process moves the ``uint8`` batch to the GPU and
resamples it there, one ``grid_sample`` per interpolation for the whole batch.

Why: decoding plus the per-image augmentation (:class:`~visionlab.data.transforms.MiniPlacesAugment`) runs at about
1,100 images/s per CPU worker (``bench/input.py``), far below what one GPU trains SimpleNet or ResNet-18 at 128 px,
so the workers, not the model, set the epoch time. The resampling is the costly part and is what a GPU does best.

The same augmentation as the CPU path, for a seed: each item draws its parameters with
:meth:`MiniPlacesAugment.make_params <visionlab.data.transforms.MiniPlacesAugment>` — the same draws, in the same
order, from the same generator (the worker's, seeded as the CPU path seeds it) — and the geometry is the one
:meth:`~visionlab.data.transforms.MiniPlacesAugment.source_map` defines for both paths. On the CPU device the
batches equal the CPU path's bit for bit (the tests check it); on a GPU ``grid_sample`` rounds differently (about
1e-6). Where the images come from (:class:`DeviceAugmentSource`'s ``payload``):

* ``"image"``: the worker decodes; the batch travels as ``uint8`` (4x less than float32) through pinned memory;
* ``"encoded"``: the worker reads the JPEG's bytes and its size (:func:`~visionlab.data.decode.jpeg_size`); the
  main process decodes the batch with ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA, whose
  pixels may differ slightly from libjpeg-turbo's, not yet measured here; on the CPU device the same decoder as
  the workers');
* ``"index"``: the split is cached (:class:`~visionlab.data.decode.ImageCache`, host, pinned or device memory) and
  the main process gathers each batch from it; no worker processes. Draws as the CPU path with ``workers=0``.

Images of different sizes (ImageFolder trees) are zero-padded to the batch's largest on the bottom and right and
their maps rescaled to match: out-of-image positions read zeros either way, so nothing else changes.

Packed parameters, one float64 row per image: ``[height, width, bicubic, a, b, c, d, e, f, scale_1..scale_C]``
(:data:`PARAM_COLUMNS` + C): the image's size, the drawn interpolation (1: bicubic), the affine source map and the
colour factors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode, v2

from visionlab.data.datasets import ImageListDataset
from visionlab.data.decode import ImageDecodeError, jpeg_size
from visionlab.data.transforms import MiniPlacesAugment, resample_batch
from visionlab.errors import DatasetError

__all__ = [
    "JPEG_SUFFIXES",
    "PARAM_COLUMNS",
    "PAYLOADS",
    "DeviceAugmentLoader",
    "DeviceAugmentSource",
    "augment_batch",
    "draw_params",
    "pad_batch",
]

PARAM_COLUMNS = 9  # height, width, bicubic, the 2x3 map; then one colour factor per channel
PAYLOADS = ("image", "encoded", "index")
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def draw_params(augment: MiniPlacesAugment, height: int, width: int, channels: int = 3) -> torch.Tensor:
    """The random parameters ``augment`` draws for a ``channels x height x width`` image (the global generator,
    exactly as ``augment(image)`` draws them), packed as a float64 row (the module docstring). Reads no pixels."""
    params = augment.make_params([torch.empty(()).expand(channels, height, width)])
    bicubic = float(params["mode"] == InterpolationMode.BICUBIC)
    scale = params["scale"].flatten().tolist()  # float32 values: exact in float64
    return torch.tensor([height, width, bicubic, *augment.source_map(params), *scale], dtype=torch.float64)


def pad_batch(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``uint8`` images ``(C, H_i, W_i)`` (one device) -> ``(B, C, H, W)``, each zero-padded on the bottom and right
    to the largest height and width; a plain stack when they share a size (MiniPlaces: always)."""
    first = images[0]
    if all(image.shape == first.shape for image in images):
        return torch.stack(list(images))
    height, width = max(image.shape[-2] for image in images), max(image.shape[-1] for image in images)
    out = first.new_zeros((len(images), first.shape[0], height, width))
    for i, image in enumerate(images):
        out[i, :, : image.shape[-2], : image.shape[-1]] = image
    return out


def augment_batch(images: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """The augmentation of a batch: ``uint8`` images ``(B, C, H, W)`` on any device (padded: :func:`pad_batch`),
    their packed parameters ``(B, 9 + C)`` float64 on the CPU (:func:`draw_params`) -> float32 ``(B, C, size,
    size)`` in [0, 1] on the images' device. Image ``i`` equals ``MiniPlacesAugment(size)`` of that image with
    those parameters (bit for bit on the CPU when it was not padded)."""
    b, c, h, w = images.shape
    if params.shape != (b, PARAM_COLUMNS + c):
        raise ValueError(f"expected parameters ({b}, {PARAM_COLUMNS + c}) for {b} {c}-channel images, got "
                         f"{tuple(params.shape)}")  # fmt: skip
    theta = params[:, 3:9].reshape(b, 2, 3).clone()
    # a padded image: x' = (x + 1) w / W - 1 puts its normalized positions into the padded frame (exact when w = W)
    for row, ratio in ((0, params[:, 1] / w), (1, params[:, 0] / h)):
        theta[:, row, :] *= ratio[:, None]
        theta[:, row, 2] += ratio - 1
    device = images.device
    theta32 = theta.to(torch.float32).to(device, non_blocking=True)
    scale = params[:, PARAM_COLUMNS:].to(torch.float32).reshape(b, c, 1, 1).to(device, non_blocking=True)
    return resample_batch(images.float().div_(255), theta32, params[:, 2] > 0.5, scale, size)


def _image_list_base(dataset: Dataset) -> tuple[ImageListDataset, Sequence[int] | None]:
    indices = None
    if isinstance(dataset, Subset):
        indices, dataset = dataset.indices, dataset.dataset
    if not isinstance(dataset, ImageListDataset):
        raise TypeError(f"{type(dataset).__name__}: only file datasets (MiniPlaces, ImageFolder) are augmented on "
                        "the device")  # fmt: skip
    return dataset, indices


def _find_augment(transform: Any) -> MiniPlacesAugment | None:
    if isinstance(transform, MiniPlacesAugment):
        return transform
    steps = list(transform.transforms) if isinstance(transform, v2.Compose) else []
    return steps[0] if len(steps) == 1 and isinstance(steps[0], MiniPlacesAugment) else None


class DeviceAugmentSource(Dataset):
    """The items of ``dataset`` (an :class:`ImageListDataset`, or a :class:`Subset` of one) for the device-side
    augmentation: ``(payload, params, label, index)`` with ``params`` the packed random draws
    (:func:`draw_params`), ``index`` the item's index in the underlying dataset and ``payload`` as ``payload``
    says (the module docstring): the ``uint8`` image after the deterministic head of the transform, the file's
    bytes (``uint8 (N,)``), or nothing (the index alone; the images are in its cache).

    Raises ``ValueError`` when the dataset's augmentation is not the MiniPlaces recipe's
    (:class:`MiniPlacesAugment`, alone after the deterministic head) or, for ``"index"``, when it has no cache;
    :class:`DatasetError` naming the list line and file for ``"encoded"`` and a file that is not a JPEG (by its
    name here, by its first bytes when read).
    """

    def __init__(self, dataset: Dataset, payload: str = "image") -> None:
        if payload not in PAYLOADS:
            raise ValueError(f"payload must be one of {', '.join(PAYLOADS)}, got {payload!r}")
        self.dataset, self.payload = dataset, payload
        self.base, self.indices = _image_list_base(dataset)
        augment = _find_augment(self.base.augmentation)
        if augment is None:
            raise ValueError(f"augments with the MiniPlaces training recipe only (MiniPlacesAugment), not "
                             f"{self.base.transform}")  # fmt: skip
        self.augment: MiniPlacesAugment = augment
        if payload == "index" and self.base.cache is None:
            raise ValueError("payload 'index' reads the dataset's cache: build it with cache=True")
        if payload == "encoded":
            for k in range(len(self)):
                entry = self.base.entries[self._base_index(k)]
                if entry.path.suffix.lower() not in JPEG_SUFFIXES:
                    raise DatasetError(f"{entry.source}: {entry.path} is not a JPEG file (only JPEGs are decoded on "
                                       "the device)")  # fmt: skip

    def __len__(self) -> int:
        return len(self.dataset)

    def _base_index(self, k: int) -> int:
        return int(self.indices[k]) if self.indices is not None else k

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        j = self._base_index(k)
        entry = self.base.entries[j]
        if self.payload == "encoded":
            try:
                with open(entry.path, "rb") as f:
                    data = bytearray(f.read())
                height, width = jpeg_size(data)
            except (OSError, ImageDecodeError) as exc:
                raise DatasetError(f"{entry.source}: cannot read JPEG {entry.path} ({exc})") from exc
            payload, channels = torch.frombuffer(data, dtype=torch.uint8), 3  # decoded as RGB
        elif self.payload == "image":
            payload = self.base.prepared(j)
            channels, height, width = payload.shape
        else:
            assert self.base.cache is not None
            channels, height, width = self.base.cache.shapes[j].tolist()
            payload = torch.empty(0, dtype=torch.uint8)
        return payload, draw_params(self.augment, height, width, channels), entry.label, j

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor, int, int]]) -> tuple[Any, ...]:
        """``(payload, params (B, 9 + C), labels (B,), indices (B,))``; the payload is the padded ``uint8`` batch
        for ``"image"``, the list of byte tensors for ``"encoded"``, None for ``"index"``."""
        payloads, params, labels, indices = zip(*items, strict=True)
        batch: Any = pad_batch(payloads) if self.payload == "image" else None
        if self.payload == "encoded":
            batch = list(payloads)
        return batch, torch.stack(params), torch.tensor(labels, dtype=torch.long), torch.tensor(indices)


class DeviceAugmentLoader:
    """Batches ``(float32 images in [0, 1] (B, C, size, size), int64 labels (B,))`` on ``device``, augmented there.

    ``loader`` is a DataLoader over ``source`` with ``collate_fn=source.collate`` (its sampler, workers and seeds
    are the CPU path's: :func:`visionlab.engine.make_loader`). Each batch is moved with ``non_blocking=True`` (from
    pinned memory when the DataLoader pins, as it does for CUDA), decoded there for ``"encoded"``, gathered from
    the cache for ``"index"`` (through a pinned staging buffer when the cache is in host memory and the device is
    CUDA), then :func:`augment_batch`. Same contract as the DataLoader it replaces: ``len`` is the number of
    batches and ``dataset`` the dataset served.
    """

    def __init__(self, source: DeviceAugmentSource, loader: DataLoader, device: torch.device) -> None:
        self.source, self.loader, self.device = source, loader, device
        self.dataset = source.dataset
        self.size = source.augment.size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for payload, params, labels, indices in self.loader:
            images = self._images(payload, indices)
            yield augment_batch(images, params, self.size), labels.to(self.device, non_blocking=True)

    def _images(self, payload: Any, indices: torch.Tensor) -> torch.Tensor:
        if self.source.payload == "image":
            return payload.to(self.device, non_blocking=True)
        if self.source.payload == "encoded":
            return pad_batch(self.decode(payload, indices))
        cache = self.source.base.cache
        assert cache is not None
        if cache.offsets is not None:  # images of several shapes: one view each
            return pad_batch([cache[int(j)] for j in indices]).to(self.device, non_blocking=True)
        if cache.data.device.type != "cpu":
            return cache.data[indices.to(cache.data.device, non_blocking=True)]
        pinned = self.device.type == "cuda"
        staging = torch.empty((len(indices), *cache.data.shape[1:]), dtype=torch.uint8, pin_memory=pinned)
        torch.index_select(cache.data, 0, indices, out=staging)
        return staging.to(self.device, non_blocking=True)

    def decode(self, data: list[torch.Tensor], indices: torch.Tensor) -> list[torch.Tensor]:
        """The batch's JPEGs decoded on the device in one call; on a failure, each alone to name the file. Runs
        with PyTorch's fill of new tensors off (:func:`_unfilled_new_tensors`)."""
        with _unfilled_new_tensors():
            try:
                return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:
                for one, j in zip(data, indices.tolist(), strict=True):
                    try:
                        decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device)
                    except RuntimeError as exc:
                        entry = self.source.base.entries[j]
                        raise DatasetError(f"{entry.source}: cannot decode image {entry.path} ({exc})") from exc
                raise


@contextmanager
def _unfilled_new_tensors() -> Iterator[None]:
    """``torch.utils.deterministic.fill_uninitialized_memory`` off inside, restored after.

    Why: under ``torch.use_deterministic_algorithms(True)`` (the trainer's default ``deterministic``) every new
    tensor is first filled (NaN, or 255 for ``uint8``) by a kernel on the *current* CUDA stream. torchvision's
    nvJPEG decoder allocates its output tensors that way, then writes the pixels on a stream of its own and only
    afterwards makes the current stream wait for it: nothing orders the fill before the decode, so a fill queued
    behind the training step's kernels can land after the pixels and leave the image all 255. The decoder writes
    every byte of its outputs, so the fill has nothing to protect here."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
