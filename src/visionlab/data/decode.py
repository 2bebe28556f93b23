"""Image files to ``uint8`` RGB tensors ``(3, H, W)``.

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
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, decode_png
from torchvision.transforms.v2 import functional as TF

__all__ = ["ImageDecodeError", "read_image"]

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


def _read_with_pil(path: str | Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"{exc.__class__.__name__}: {exc}") from exc
    return TF.pil_to_tensor(rgb)
