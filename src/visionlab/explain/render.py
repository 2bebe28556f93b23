"""Drawing saliency maps and adversarial differences: overlays, grids, PNG files and TensorBoard images.

Every function takes and returns pixels in [0, 1]; images are ``(N, C, H, W)`` with ``C`` 1 (grayscale) or 3
(RGB), maps are ``(N, H, W)`` as :func:`visionlab.explain.saliency` returns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from visionlab.checks import check_number
from visionlab.errors import ConfigError

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    "TAG_ADVERSARIAL",
    "TAG_ORIGINAL",
    "TAG_SALIENCY",
    "add_to_tensorboard",
    "amplified_difference",
    "heatmap_overlay",
    "image_grid",
    "red_overlay",
    "save_grid",
]

# The original course's TensorBoard image tags.
TAG_SALIENCY = "Image/Image_Atten"
TAG_ORIGINAL = "Image/Org_Image"
TAG_ADVERSARIAL = "Image/Adv_Image"


def red_overlay(images: Tensor, maps: Tensor, threshold: float = 2.0) -> Tensor:
    """The original course rendering: the red channel is set to 1.0 where a map exceeds ``threshold`` times
    its image's mean.

    Args:
        images: ``(N, C, H, W)`` pixels in [0, 1], ``C`` 1 or 3; grayscale is repeated to RGB first.
        maps: ``(N, H, W)`` saliency maps (non-negative, e.g. ``saliency(..., abs=True)``).
        threshold: multiple of the per-image mean map value above which a pixel is marked (default 2.0).

    Returns:
        ``(N, 3, H, W)`` in [0, 1]: marked pixels get red = 1.0 (the top of the pixel range; the course set
        red to the image maximum, which is 1.0 for [0, 1] pixels), their green and blue and every other pixel
        keep the image's values.
    """
    _check_pair(images, maps)
    check_number(threshold, "threshold")
    out = _to_rgb(images).clone()
    mask = maps > threshold * maps.mean(dim=(1, 2), keepdim=True)
    out[:, 0][mask] = 1.0
    return out.clamp_(0.0, 1.0)


def heatmap_overlay(images: Tensor, maps: Tensor, alpha: float = 0.5, cmap: str = "inferno") -> Tensor:
    """Each map min-max normalised to [0, 1] per image, coloured by a matplotlib colormap and alpha-blended.

    Args:
        images: ``(N, C, H, W)`` pixels in [0, 1], ``C`` 1 or 3.
        maps: ``(N, H, W)``; a constant map draws as the colormap's lowest colour.
        alpha: weight of the colour, ``(1 - alpha)`` of the image (default 0.5); in [0, 1].
        cmap: a registered matplotlib colormap name (default ``"inferno"``).

    Returns:
        ``(N, 3, H, W)`` in [0, 1].
    """
    _check_pair(images, maps)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"must be in [0, 1], got {alpha!r}", field="alpha")
    lut = _colormap(cmap, images.device, images.dtype)  # (256, 3)
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    unit = torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)
    colour = lut[(unit * (len(lut) - 1)).round().long()].permute(0, 3, 1, 2)
    return ((1.0 - alpha) * _to_rgb(images) + alpha * colour).clamp_(0.0, 1.0)


def image_grid(images: Tensor, nrow: int = 10, padding: int = 2) -> Tensor:
    """``(N, C, H, W)`` -> one ``(3, H', W')`` grid image, ``nrow`` images per row (the course used 10), black
    ``padding`` pixels between them (``torchvision.utils.make_grid``; a single image comes back unpadded)."""
    _check_images(images)
    return make_grid(images.detach(), nrow=nrow, padding=padding)


def save_grid(images: Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Write ``images`` ``(N, C, H, W)`` as a PNG grid of ``nrow`` per row (or a ready ``(C, H, W)`` grid as
    is) to ``path``, creating its folder; returns the path."""
    path = Path(path)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    _check_images(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu(), path, nrow=nrow, format="png")
    return path


def add_to_tensorboard(writer: SummaryWriter, tag: str, grid: Tensor, step: int = 0) -> None:
    """Log ``grid`` (a ``(C, H, W)`` grid, or an ``(N, C, H, W)`` batch, gridded 10 per row) as image ``tag``
    (e.g. :data:`TAG_SALIENCY`) at global step ``step``."""
    if grid.dim() == 4:
        grid = image_grid(grid)
    if grid.dim() != 3:
        raise ValueError(
            f"add_to_tensorboard: expected a (C, H, W) grid or (N, C, H, W) batch, got {tuple(grid.shape)}"
        )
    writer.add_image(tag, grid.detach().cpu().clamp(0.0, 1.0), global_step=step, dataformats="CHW")


def amplified_difference(original: Tensor, adversarial: Tensor, gain: float | None = None) -> Tensor:
    """``0.5 + gain * (adversarial - original)`` clamped to [0, 1]: a visible picture of a tiny perturbation,
    grey where nothing changed.

    ``gain=None`` picks one gain for the whole batch so the largest ``|difference|`` maps to ±0.5 (images stay
    comparable with each other); identical inputs give 0.5 everywhere. Shapes must match.
    """
    if original.shape != adversarial.shape:
        raise ValueError(f"amplified_difference: shapes differ, {tuple(original.shape)} vs {tuple(adversarial.shape)}")
    diff = (adversarial - original).detach()
    if gain is None:
        largest = float(diff.abs().max()) if diff.numel() else 0.0
        gain = 0.5 / largest if largest > 0 else 1.0
    else:
        check_number(gain, "gain", inclusive=False, optional=True)
    return (0.5 + gain * diff).clamp_(0.0, 1.0)


def _to_rgb(images: Tensor) -> Tensor:
    images = images.detach()
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _colormap(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A matplotlib colormap sampled at 256 levels, ``(256, 3)`` RGB in [0, 1]."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ConfigError(f"unknown matplotlib colormap {name!r}", field="cmap") from None
    levels = cmap(torch.linspace(0.0, 1.0, 256).numpy())[:, :3]
    return torch.as_tensor(levels, dtype=dtype, device=device)


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with C 1 or 3, got {tuple(images.shape)}")


def _check_pair(images: Tensor, maps: Tensor) -> None:
    _check_images(images)
    n, _, h, w = images.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"expected maps ({n}, {h}, {w}) for images {tuple(images.shape)}, got {tuple(maps.shape)}")
