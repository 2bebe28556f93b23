"""read_image against PIL's open + convert("RGB") on files written in the real formats, its errors, and the
ImageCache layouts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.data.decode import ImageCache, ImageDecodeError, read_image


def pil_rgb(path: Path) -> torch.Tensor:
    """What ImageListDataset decoded before: PIL open + convert("RGB"), as uint8 (3, H, W)."""
    with Image.open(path) as img:
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


def smooth(width: int, height: int) -> np.ndarray:
    """Gradients (the kind of content JPEG is made for), uint8 (H, W, 3)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------- JPEG
@pytest.mark.parametrize("subsampling", [0, 2], ids=["4:4:4", "4:2:0"])
@pytest.mark.parametrize("content", ["noise", "smooth"])
@pytest.mark.parametrize("size", [(128, 128), (23, 17)])
def test_jpeg_gives_pils_pixels(tmp_path: Path, content: str, subsampling: int, size: tuple[int, int]) -> None:
    pixels = noise(*size) if content == "noise" else smooth(*size)
    path = tmp_path / "x.jpg"
    Image.fromarray(pixels).save(path, quality=90, subsampling=subsampling)
    ours, reference = read_image(path), pil_rgb(path)
    assert ours.dtype == torch.uint8 and ours.shape == (3, size[1], size[0])
    # Both link libjpeg-turbo with the same (islow) IDCT and upsampling: with the pinned builds the pixels are
    # identical. One level is left for a Pillow linked against another libjpeg, whose rounding may differ.
    assert (ours.int() - reference.int()).abs().max() <= 1


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.jpg"
    Image.fromarray(smooth(40, 30)[..., 0]).save(path)
    with Image.open(path) as img:
        assert img.mode == "L"
    ours = read_image(path)
    assert ours.shape == (3, 30, 40)
    assert torch.equal(ours[0], ours[1]) and torch.equal(ours[0], ours[2])
    assert (ours.int() - pil_rgb(path).int()).abs().max() <= 1


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(smooth(40, 30)).convert("CMYK").save(path)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    ours = read_image(path)
    assert ours.shape == (3, 30, 40)
    assert (ours.int() - pil_rgb(path).int()).abs().max() <= 1


# --------------------------------------------------------------------------------------------- PNG and others
@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA"])
def test_png_gives_pils_pixels_exactly(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(noise(24, 20)).convert(mode).save(path)
    ours = read_image(path)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 20, 24)
    assert torch.equal(ours, pil_rgb(path))  # lossless: no decoder latitude


def test_16_bit_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 65535], [4660, 32768, 40000, 65280]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    ours = read_image(path)
    expected = torch.from_numpy((values >> 8).astype(np.uint8)).expand(3, -1, -1)
    assert ours.dtype == torch.uint8 and torch.equal(ours, expected)


@pytest.mark.parametrize("suffix", [".bmp", ".ppm", ".tif", ".gif"])
def test_other_formats_are_read_through_pil(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    Image.fromarray(noise(12, 10)).save(path)
    ours = read_image(path)
    assert ours.shape == (3, 10, 12) and torch.equal(ours, pil_rgb(path))


# --------------------------------------------------------------------------------------------- errors
def _broken(tmp_path: Path, how: str) -> Path:
    """A 32x32 noise image saved as PNG (``how`` starting with "png") or JPEG, then broken ``how``."""
    path = tmp_path / ("x.png" if how.startswith("png") else "x.jpg")
    Image.fromarray(noise(32, 32)).save(path)
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    else:
        cut = {"empty": b"", "garbage": b"not an image" * 8, "jpeg_truncated": data[:-60],
               "jpeg_header_only": data[:200], "png_truncated": data[: len(data) // 2]}  # fmt: skip
        path.write_bytes(cut[how])
    return path


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("missing", "FileNotFoundError: No such file or directory"),
        ("empty", "empty file"),
        ("garbage", "UnidentifiedImageError"),
        ("jpeg_truncated", "Image is incomplete or truncated"),
        ("jpeg_header_only", "Image is incomplete or truncated"),
        ("png_truncated", "corrupted"),
    ],
)
def test_unreadable_file_raises_decode_error_with_the_reason(tmp_path: Path, how: str, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        read_image(_broken(tmp_path, how))
    message = str(info.value)
    assert reason in message, message
    assert ".cpp:" not in message  # torchvision's C++ source location is noise to a user


# --------------------------------------------------------------------------------------------- ImageCache
def test_cache_of_one_shape_is_one_nchw_tensor() -> None:
    images = [torch.full((3, 4, 5), i, dtype=torch.uint8) for i in range(10)]
    cache = ImageCache.build(len(images), images.__getitem__, workers=3)
    assert cache.data.shape == (10, 3, 4, 5) and cache.offsets is None
    assert len(cache) == 10 and cache.nbytes == 10 * 3 * 4 * 5
    for i, image in enumerate(images):
        assert torch.equal(cache[i], image)


@pytest.mark.parametrize("first_odd", [0, 1, 5])
def test_cache_of_mixed_shapes_keeps_every_image(first_odd: int) -> None:
    """Images of the first one's shape until ``first_odd``, then mixed: the flat layout, nothing lost."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4, 5)] * first_odd + [(3, 2 + i % 3, 6 - i % 2) for i in range(7)]
    images = [torch.randint(0, 256, s, dtype=torch.uint8, generator=gen) for s in shapes]
    cache = ImageCache.build(len(images), images.__getitem__, workers=2)
    assert cache.offsets is not None and cache.data.dim() == 1
    assert cache.nbytes == sum(image.numel() for image in images)
    for i, image in enumerate(images):
        assert torch.equal(cache[i], image)


def test_cache_rejects_what_is_not_a_uint8_image() -> None:
    with pytest.raises(ValueError, match="image 1: expected uint8"):
        ImageCache.build(2, lambda i: torch.zeros(3, 2, 2, dtype=torch.uint8 if i == 0 else torch.float32))


def test_cache_tells_shapes_apart_by_the_channel_count_too_and_refuses_other_ranks() -> None:
    """The nearest odd shapes: one channel where the first image had three, the same height and width (it must not
    be broadcast into the first shape), and images of rank 2 and 4."""
    images = [torch.full((3, 2, 2), 1, dtype=torch.uint8), torch.full((1, 2, 2), 2, dtype=torch.uint8)]
    cache = ImageCache.build(2, images.__getitem__, workers=1)
    assert cache.offsets is not None and torch.equal(cache[0], images[0]) and torch.equal(cache[1], images[1])
    for bad in (torch.zeros(2, 2, dtype=torch.uint8), torch.zeros(1, 3, 2, 2, dtype=torch.uint8)):
        with pytest.raises(ValueError) as info:
            ImageCache.build(2, lambda i, bad=bad: images[0] if i == 0 else bad, workers=1)
        assert str(info.value) == f"image 1: expected uint8 (C, H, W), got torch.uint8 {tuple(bad.shape)}"


# --------------------------------------------------------------------------------------------- exact values
@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("empty", "empty file"),
        ("jpeg_truncated", "Image is incomplete or truncated"),
        ("png_truncated", "Out of bound read in decode_png. Probably, the input image is corrupted"),
    ],
)
def test_decode_error_message_is_exactly_the_reason(tmp_path: Path, how: str, message: str) -> None:
    """The whole message: torchvision's ``…/decode_jpeg.cpp:171, `` prefix cut off and nothing put in its place."""
    with pytest.raises(ImageDecodeError, match=f"^{re.escape(message)}$"):
        read_image(_broken(tmp_path, how))


@pytest.mark.parametrize("suffix", [".pgm", ".bmp", ".tif"])
def test_grayscale_file_read_through_pil_becomes_three_equal_channels(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"g{suffix}"
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(path)
    ours = read_image(path)
    assert ours.dtype == torch.uint8 and torch.equal(ours, torch.from_numpy(gray).expand(3, -1, -1))


def test_cache_of_nothing_is_refused_and_of_one_image_is_built() -> None:
    with pytest.raises(ValueError, match=r"^nothing to cache$"):
        ImageCache.build(0, lambda i: torch.zeros(3, 1, 1, dtype=torch.uint8))
    cache = ImageCache.build(1, lambda i: torch.full((3, 1, 2), 7, dtype=torch.uint8))
    assert len(cache) == 1 and torch.equal(cache[0], torch.full((3, 1, 2), 7, dtype=torch.uint8))


def tagged(i: int, width: int = 2) -> torch.Tensor:
    """Image ``i`` as (3, 1, width): its index in base 256 in the first two pixels, so every image differs."""
    image = torch.zeros(3, 1, width, dtype=torch.uint8)
    image[:, 0, 0], image[:, 0, 1] = i // 256, i % 256
    return image


@pytest.mark.parametrize("mixed", [False, True], ids=["one_shape", "mixed"])
def test_cache_longer_than_one_chunk_keeps_every_image_in_place(mixed: bool) -> None:
    """One worker loads 256 images a chunk: images 256..299 come from the second chunk, at their own index."""
    n = 300
    images = [tagged(i, width=2 + (mixed and i % 2)) for i in range(n)]
    loaded: list[int] = []
    cache = ImageCache.build(n, lambda i: loaded.append(i) or images[i], workers=1)
    assert sorted(loaded) == list(range(n))
    assert len(cache) == n
    for i in (0, 255, 256, 257, 299):
        assert torch.equal(cache[i], images[i])
    assert all(torch.equal(cache[i], images[i]) for i in range(n))


def test_mixed_cache_offsets_are_exact_int64() -> None:
    """Offsets in bytes from the start of the flat buffer, int64 (float32 would lose bytes past 2**24)."""
    shapes = [(3, 2, 2), (1, 3, 3), (3, 1, 5)]
    images = [torch.full(s, k + 1, dtype=torch.uint8) for k, s in enumerate(shapes)]
    cache = ImageCache.build(3, images.__getitem__, workers=1)
    assert cache.offsets is not None and cache.offsets.dtype == torch.int64
    assert cache.offsets.tolist() == [0, 12, 21]
    assert cache.shapes.dtype == torch.int64 and cache.shapes.tolist() == [list(s) for s in shapes]
    assert cache.data.tolist() == [1] * 12 + [2] * 9 + [3] * 15
