"""The device-side augmentation on the CPU device: the batched resampling equals the per-image
``MiniPlacesAugment`` for the same draws (bit for bit; to float rounding for a padded batch), the workers draw
exactly what the CPU path draws, the loaders of every payload give the CPU path's batches, the JPEG header is read
right, and what cannot be served is refused naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.data import DatasetError, ImageListDataset, load_dataset
from visionlab.data.decode import ImageDecodeError, jpeg_size, read_image
from visionlab.data.device_augment import DeviceAugmentSource, augment_batch, draw_params, pad_batch
from visionlab.data.lists import ListEntry
from visionlab.data.transforms import MiniPlacesAugment, eval_transform, train_transform
from visionlab.engine import make_loader
from visionlab.engine.loaders import make_device_loader

from .conftest import damage, save_image

CPU = torch.device("cpu")


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------- the batched map
@pytest.mark.parametrize("size", [128, 32])
def test_batched_augmentation_equals_the_per_image_augmentation_bit_for_bit(size: int) -> None:
    """Eight 128x128 images (MiniPlaces' size): the parameters drawn image by image, then the batch resampled at
    once, give exactly what ``MiniPlacesAugment`` gives each image with the same seed — both interpolations."""
    augment, images = MiniPlacesAugment(size), torch.stack([_image(128, 128, k) for k in range(8)])
    torch.manual_seed(11)
    expected = torch.stack([augment(image) for image in images])
    after = torch.get_rng_state()
    torch.manual_seed(11)
    params = torch.stack([draw_params(augment, 128, 128) for _ in images])
    assert torch.equal(torch.get_rng_state(), after)  # the same numbers drawn, in the same order
    assert 0 < int(params[:, 2].sum()) < 8  # both kernels in the batch: two grid_sample groups
    assert torch.equal(augment_batch(images, params, size), expected)


def test_a_padded_batch_of_several_sizes_equals_the_per_image_augmentation_to_rounding() -> None:
    """ImageFolder images of different sizes are zero-padded to the largest and their maps rescaled: the same
    pixels up to float rounding of the sampling positions."""
    augment = MiniPlacesAugment(32)
    images = [_image(40, 56, 1), _image(64, 30, 2), _image(33, 33, 3), _image(64, 56, 4)]
    torch.manual_seed(3)
    expected = torch.stack([augment(image) for image in images])
    torch.manual_seed(3)
    params = torch.stack([draw_params(augment, *image.shape[1:]) for image in images])
    padded = pad_batch(images)
    assert padded.shape == (4, 3, 64, 56) and int(padded[0, :, 40:].abs().sum()) == 0
    got = augment_batch(padded, params, 32)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert torch.equal(got[3], expected[3])  # the largest image is not padded: exact


def test_wrongly_shaped_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected parameters \(2, 12\)"):
        augment_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 11, dtype=torch.float64), 8)


# --------------------------------------------------------------------------------------------- JPEG header
def _jpeg(h: int, w: int, **save: object) -> bytes:
    buffer = io.BytesIO()
    mode = save.pop("mode", "RGB")
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), mode=mode).save(
        buffer, format="JPEG", **save
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    "save",
    [{}, {"progressive": True}, {"mode": "L"}, {"exif": b"Exif\x00\x00" + b"\x00" * 40}, {"optimize": True}],
    ids=["baseline", "progressive", "grayscale", "exif", "optimized"],
)
def test_jpeg_size_reads_the_frame_header(save: dict) -> None:
    data = _jpeg(37, 129, **save)
    assert jpeg_size(data) == (37, 129)
    assert tuple(read_image_bytes(data).shape[-2:]) == (37, 129)


def read_image_bytes(data: bytes) -> torch.Tensor:
    from torchvision.io import decode_jpeg

    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not a JPEG"),
        (_jpeg(8, 8)[:20], "no frame header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 9 + b"\x12\x34\x56\x78", "no marker at byte 20"),
    ],
    ids=["png", "truncated", "garbage-after-segment"],
)
def test_jpeg_size_refuses_what_is_not_a_whole_jpeg_header(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        jpeg_size(data)


# --------------------------------------------------------------------------------------------- loaders
def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)  # the global generator: what workers=0 draws from, in both paths
    return list(loader)


def _cpu_and_device(dataset, payload: str, workers: int) -> tuple[list, list]:
    cpu = _batches(make_loader(dataset, 2, train=True, workers=workers, device=CPU,
                               generator=torch.Generator().manual_seed(4)))  # fmt: skip
    device = _batches(make_device_loader(dataset, 2, payload=payload, workers=workers, device=CPU,
                                         generator=torch.Generator().manual_seed(4)))  # fmt: skip
    return cpu, device


@pytest.mark.parametrize(
    ("cache", "payload", "workers"),
    [(False, "image", 0), (False, "image", 1), (False, "encoded", 1), (True, "index", 0)],
)
def test_device_loaders_give_the_cpu_paths_batches(miniplaces: Path, cache: bool, payload: str, workers: int) -> None:
    """The fixture's JPEGs through the CPU path (workers decode and augment) and through the device path on the
    CPU device (workers decode, or only read the bytes; or the cache): the very same batches, two epochs."""
    train = load_dataset(str(miniplaces), image_size=16, cache=cache).train
    cpu, device = _cpu_and_device(train, payload, workers)
    assert len(cpu) == len(device) == 3
    for (x, y), (x2, y2) in zip(cpu, device, strict=True):
        assert torch.equal(y, y2) and torch.equal(x, x2)


def test_device_decode_gives_the_worker_decoders_pixels(miniplaces: Path) -> None:
    """``decode_jpeg(list, device="cpu")`` in the main process decodes exactly what the workers' ``read_image``
    decodes."""
    train = load_dataset(str(miniplaces), image_size=16).train
    source = DeviceAugmentSource(train, "encoded")
    loader = make_device_loader(train, 6, payload="encoded", workers=0, device=CPU)
    payload, _, _, indices = source.collate([source[k] for k in range(6)])
    decoded = loader.decode(payload, indices)
    for image, j in zip(decoded, indices.tolist(), strict=True):
        assert torch.equal(image, read_image(train.entries[j].path))


@pytest.fixture
def deterministic_algorithms():
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` (what the trainer sets by default) for one
    test, the previous setting and fill flag restored after."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.utils.deterministic.fill_uninitialized_memory = fill


@pytest.mark.usefixtures("deterministic_algorithms")
def test_device_decode_runs_without_the_deterministic_fill_of_new_tensors(miniplaces: Path, monkeypatch) -> None:
    """nvJPEG writes its outputs on a stream of its own, while the deterministic fill of a new tensor (255 for
    uint8) runs on the current stream, unordered with it: the decode must run with the fill off (seen here by the
    decoder), and the setting is back afterwards, also when the decoder fails."""
    import visionlab.data.device_augment as device_augment

    seen: list[bool] = []
    real = device_augment.decode_jpeg

    def spy(*args, **kwargs):
        seen.append(torch.utils.deterministic.fill_uninitialized_memory)
        return real(*args, **kwargs)

    monkeypatch.setattr(device_augment, "decode_jpeg", spy)
    train = load_dataset(str(miniplaces), image_size=16).train
    source = DeviceAugmentSource(train, "encoded")
    loader = make_device_loader(train, 2, payload="encoded", workers=0, device=CPU)
    payload, _, _, indices = source.collate([source[k] for k in range(2)])
    assert torch.empty(2, dtype=torch.uint8).tolist() == [255, 255]  # the fill is on outside the decode
    decoded = loader.decode(payload, indices)
    assert seen == [False] and torch.utils.deterministic.fill_uninitialized_memory
    assert torch.equal(decoded[0], read_image(train.entries[int(indices[0])].path))
    with pytest.raises(DatasetError, match="cannot decode image"):
        loader.decode([torch.tensor([0xFF, 0xD8, 0xFF, 0xD9], dtype=torch.uint8)], indices[:1])
    assert seen[1:] == [False, False] and torch.utils.deterministic.fill_uninitialized_memory


def test_a_limited_and_relabelled_training_set_keeps_its_items_and_labels(miniplaces: Path) -> None:
    from visionlab.data import shuffle_labels
    from visionlab.engine import limit

    train = shuffle_labels(limit(load_dataset(str(miniplaces), image_size=16).train, 4), torch.Generator())
    cpu, device = _cpu_and_device(train, "image", 0)
    assert sum(len(y) for _, y in device) == 4
    for (x, y), (x2, y2) in zip(cpu, device, strict=True):
        assert torch.equal(y, y2) and torch.equal(x, x2)


def test_a_cache_of_several_image_sizes_is_served_padded(tmp_path: Path) -> None:
    entries = []
    for k, size in enumerate([(20, 16), (30, 24), (20, 16), (17, 40)]):
        save_image(tmp_path / f"{k}.jpg", seed=k, size=size)
        entries.append(ListEntry(tmp_path / f"{k}.jpg", k % 2, f"list:{k + 1}"))
    train = ImageListDataset(entries, train_transform("miniplaces", 16), cache=True)
    assert train.cache is not None and train.cache.offsets is not None  # the flat layout
    cpu, device = _cpu_and_device(train, "index", 0)
    for (x, y), (x2, y2) in zip(cpu, device, strict=True):
        assert torch.equal(y, y2)
        torch.testing.assert_close(x2, x, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------- refusals
def test_another_augmentation_is_refused(miniplaces: Path) -> None:
    val = load_dataset(str(miniplaces), image_size=16).val
    assert isinstance(val.transform, type(eval_transform("miniplaces", 16)))
    with pytest.raises(ValueError, match="MiniPlaces training recipe only"):
        DeviceAugmentSource(val)


def test_the_index_payload_needs_a_cache(miniplaces: Path) -> None:
    with pytest.raises(ValueError, match="cache=True"):
        DeviceAugmentSource(load_dataset(str(miniplaces), image_size=16).train, "index")


def test_device_decoding_refuses_a_file_that_is_not_a_jpeg_naming_it(image_folder: Path) -> None:
    train = load_dataset(f"folder:{image_folder}", image_size=16).train
    first = train.entries[0]
    with pytest.raises(DatasetError, match=f"{first.path} is not a JPEG file"):
        DeviceAugmentSource(train, "encoded")


def test_a_png_named_jpg_is_refused_when_read_naming_its_line(miniplaces: Path) -> None:
    image = miniplaces / "images/train/b/bakery/00000002.jpg"  # train.txt line 4
    Image.open(image).save(image, format="PNG")
    source = DeviceAugmentSource(load_dataset(str(miniplaces), image_size=16, check_images=False).train, "encoded")
    with pytest.raises(DatasetError, match=rf"train.txt:4: cannot read JPEG {image} \(not a JPEG"):
        source[3]


def test_a_corrupt_jpeg_is_named_when_the_batch_is_decoded(miniplaces: Path) -> None:
    image = miniplaces / "images/train/b/bakery/00000002.jpg"
    damage(image, "truncated_data")
    train = load_dataset(str(miniplaces), image_size=16, check_images=False).train
    loader = make_device_loader(train, 6, payload="encoded", workers=0, device=CPU)
    with pytest.raises(DatasetError, match=rf"train.txt:4: cannot decode image {image}"):
        list(loader)
