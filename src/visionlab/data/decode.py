"""Image files to ``uint8`` RGB tensors ``(3, H, W)``, and a cache holding a whole split decoded in memory.

Decoding: JPEG and PNG — the formats MiniPlaces and most ImageFolder trees use — go straight from the file's
bytes to a tensor with torchvision's decoders (libjpeg-turbo, libpng), with no PIL image in between; the
``transforms.v2`` pipeline then runs on that tensor. ``ImageReadMode.RGB`` makes every file three channels:
grayscale is replicated, CMYK/YCCK converted, a palette expanded, alpha dropped — what PIL's
``convert("RGB")`` gives, and for JPEG bit for bit with the pinned builds (both link libjpeg-turbo; the tests
check it). A 16-bit PNG is scaled to 8 bits (PIL's ``convert("RGB")`` clipped it instead). Other formats (BMP,
PPM/PGM, TIFF, GIF, WebP) are rare in these datasets and go through PIL. EXIF orientation is not applied, as
PIL's ``open`` + ``convert`` did not apply it either. torchvision 0.29 marks these decoders deprecated in favour of
TorchCodec (a ``DeprecationWarning``, hidden by Python's default filters); :func:`read_image` is the one place to
change when they go.

Reduced-size decoding (libjpeg's DCT scaling, PIL's ``draft``) is not used: MiniPlaces images are 128 px and
the recipes enlarge them to 144 before cropping, so there is nothing to shrink; for large ImageFolder JPEGs it
could help, but torchvision's decoder has no scale option and it would change the pixels the augmentation sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, decode_png
from torchvision.transforms.v2 import functional as TF

__all__ = ["ImageCache", "ImageDecodeError", "is_jpeg", "jpeg_size", "read_image"]

_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_CPP_PREFIX = re.compile(r"^.*\.cpp:\d+, ")  # "decode_jpeg, /…/decode_jpeg.cpp:171, Image is truncated"


class ImageDecodeError(ValueError):
    """A file that is missing, empty, truncated or not an image; the message says why (the caller adds where)."""


def read_image(path: str | Path) -> torch.Tensor:
    """Decode the image file at ``path`` to a ``uint8`` tensor ``(3, H, W)`` in RGB order (see the module
    docstring for the formats); raises :class:`ImageDecodeError`."""
    try:
        with open(path, "rb") as f:
            data = bytearray(f.read())
    except OSError as exc:
        raise ImageDecodeError(f"{exc.__class__.__name__}: {exc.strerror or exc}") from exc
    if not data:
        raise ImageDecodeError("empty file")
    try:
        if data.startswith(_JPEG_MAGIC):
            return decode_jpeg(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB)
        if data.startswith(_PNG_MAGIC):
            image = decode_png(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB)
            return TF.to_dtype(image, torch.uint8, scale=True) if image.dtype != torch.uint8 else image
    except RuntimeError as exc:
        raise ImageDecodeError(_CPP_PREFIX.sub("", str(exc))) from exc
    return _read_with_pil(path)


def is_jpeg(data: bytes | bytearray) -> bool:
    """Whether ``data`` starts like a JPEG file (SOI marker ``FF D8`` then a marker byte)."""
    return bytes(data[:3]) == _JPEG_MAGIC


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic): every one but DHT
# (C4), JPG (C8) and DAC (CC) in C0-CF carries the frame size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes | bytearray) -> tuple[int, int]:
    """``(height, width)`` of the JPEG in ``data``, read from its start-of-frame header without decoding (a few
    dozen bytes are looked at: the marker segments before the frame header are skipped by their lengths).

    Why: the device-side augmentation (:mod:`visionlab.data.device_augment`) draws an image's random crop in a
    DataLoader worker, which needs the size, while the image itself is decoded later on the GPU; torchvision's
    ``decode_jpeg`` has no header-only mode. EXIF orientation is not applied, as :func:`read_image` does not apply
    it either. Raises :class:`ImageDecodeError` when ``data`` is not a JPEG or ends before its frame header."""
    if not is_jpeg(data):
        raise ImageDecodeError("not a JPEG file (no FF D8 start-of-image marker)")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG header (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            if height == 0 or width == 0:
                raise ImageDecodeError(f"JPEG frame header says {width}x{height}")
            return height, width
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame header
            break
        i += 2 + length
    raise ImageDecodeError("truncated or corrupt JPEG: no frame header (size) found")


def _read_with_pil(path: str | Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"{exc.__class__.__name__}: {exc}") from exc
    return TF.pil_to_tensor(rgb)


class ImageCache:
    """``n`` decoded (and deterministically prepared) images held in one ``uint8`` tensor.

    Images of one shape (MiniPlaces, or any split after a resize + crop) are stored as ``(n, C, H, W)``; images
    of different shapes back to back in a flat buffer with their offsets. ``cache[i]`` is a view, no copy, so a
    transform must not modify its input in place (``transforms.v2`` ones do not).

    Build it with :meth:`build` before a DataLoader starts its workers: worker processes started by ``fork`` (the
    default on Linux) then read the parent's tensor without copying it. Started by ``spawn`` or ``forkserver``,
    they receive it through shared memory (``/dev/shm`` must hold it).
    """

    def __init__(self, data: torch.Tensor, shapes: torch.Tensor, offsets: torch.Tensor | None) -> None:
        self.data, self.shapes, self.offsets = data, shapes, offsets

    @classmethod
    def build(cls, n: int, load: Callable[[int], torch.Tensor], *, workers: int = 8) -> ImageCache:
        """Call ``load(i)`` (a ``uint8`` image ``(C, H, W)``) for ``i < n`` on ``workers`` threads (the decoders
        release the GIL) and keep the results. Peak memory is the cache itself when every image has the first
        one's shape; otherwise, while the images are gathered, also ``n`` times the first image's size."""
        if n == 0:
            raise ValueError("nothing to cache")
        uniform: torch.Tensor | None = None
        pieces: list[torch.Tensor] = []  # the flat buffer's pieces, once shapes differ
        shapes: list[tuple[int, ...]] = []
        chunk = 256 * max(1, workers)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, n, chunk):
                for i, image in enumerate(pool.map(load, range(start, min(n, start + chunk))), start=start):
                    if image.dtype != torch.uint8 or image.dim() != 3:
                        raise ValueError(f"image {i}: expected uint8 (C, H, W), got {image.dtype} {tuple(image.shape)}")
                    shapes.append(tuple(image.shape))
                    if uniform is None and not pieces:
                        uniform = torch.empty((n, *image.shape), dtype=torch.uint8)
                    if uniform is not None and image.shape == uniform.shape[1:]:
                        uniform[i] = image
                        continue
                    if uniform is not None:  # the first odd shape: switch to the flat layout
                        pieces.append(uniform[:i].reshape(-1))
                        uniform = None
                    pieces.append(image.reshape(-1).clone())
        shape_table = torch.tensor(shapes, dtype=torch.int64)
        if uniform is not None:
            return cls(uniform, shape_table, None)
        sizes = shape_table.prod(dim=1)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)[:-1]])
        return cls(torch.cat(pieces), shape_table, offsets)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.offsets is None:
            return self.data[index]
        shape: Sequence[int] = self.shapes[index].tolist()
        start = int(self.offsets[index])
        return self.data[start : start + shape[0] * shape[1] * shape[2]].view(shape)

    def placed(self, where: str | torch.device) -> ImageCache:
        """This cache with its images moved: ``"pinned"`` (page-locked host memory, which the GPU copies from
        without a staging copy and which is never swapped out) or a device (``cuda``: the GPU's memory).
        A CPU device returns the cache itself. The move copies once (while it runs both copies exist: twice the
        memory for a moment); the shapes and offsets stay where they are (read on the host)."""
        if where == "pinned":
            return ImageCache(self.data.pin_memory(), self.shapes, self.offsets)
        device = torch.device(where)
        if device == self.data.device:
            return self
        return ImageCache(self.data.to(device), self.shapes, self.offsets)

    @property
    def nbytes(self) -> int:
        """Bytes held by the images."""
        return self.data.numel()
