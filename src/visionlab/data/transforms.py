"""Training and evaluation transforms (torchvision.transforms.v2). Every pipeline ends in float32 pixels in
[0, 1]; normalization happens inside the model (:class:`visionlab.models.Normalize`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.functional import _get_inverse_affine_matrix
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "MiniPlacesAugment",
    "RandomChannelScale",
    "RandomInterpolationResize",
    "RandomRotateCrop",
    "affine_grids",
    "eval_transform",
    "inscribed_rect",
    "miniplaces_chain",
    "resample_batch",
    "split_deterministic",
    "to_float_transform",
    "train_transform",
]


def inscribed_rect(w: float, h: float, angle_rad: float) -> tuple[float, float]:
    """Width and height of the largest axis-aligned rectangle inside a ``w x h`` rectangle rotated by
    ``angle_rad`` about its centre (so the crop holds no padding)."""
    if w <= 0 or h <= 0:
        return 0.0, 0.0
    long_side, short_side = (w, h) if w >= h else (h, w)
    sin_a, cos_a = abs(math.sin(angle_rad)), abs(math.cos(angle_rad))
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        # Half-constrained: two crop corners touch the longer sides.
        x = 0.5 * short_side
        return (x / sin_a, x / cos_a) if w >= h else (x / cos_a, x / sin_a)
    cos_2a = cos_a * cos_a - sin_a * sin_a
    return (w * cos_a - h * sin_a) / cos_2a, (h * cos_a - w * sin_a) / cos_2a


class RandomInterpolationResize(v2.Transform):
    """Resize the shorter side to ``size`` with an interpolation drawn at random per image (bilinear or
    bicubic), so the network does not overfit one resampling kernel."""

    def __init__(
        self,
        size: int,
        modes: tuple[InterpolationMode, ...] = (
            InterpolationMode.BILINEAR,
            InterpolationMode.BICUBIC,
        ),
    ) -> None:
        super().__init__()
        self.size, self.modes = size, modes

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"mode": self.modes[int(torch.randint(len(self.modes), ()))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, [self.size], interpolation=params["mode"], antialias=True)


class RandomRotateCrop(v2.Transform):
    """Rotate by an angle uniform in ``[-degrees, degrees]`` and crop the largest inscribed rectangle, so no
    black corners enter the image."""

    def __init__(self, degrees: float) -> None:
        super().__init__()
        self.degrees = degrees

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        angle = float(torch.empty(()).uniform_(-self.degrees, self.degrees))
        return {"angle": angle}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        h, w = v2.query_size([inpt])
        angle = params["angle"]
        cw, ch = inscribed_rect(w, h, math.radians(angle))
        rotated = TF.rotate(inpt, angle, interpolation=InterpolationMode.BILINEAR)
        return TF.center_crop(rotated, [max(1, int(ch)), max(1, int(cw))])


class RandomChannelScale(v2.Transform):
    """Multiply each channel by a factor uniform in ``[1 - amount, 1 + amount]`` (float images in [0, 1],
    clamped back into range): a cheap colour jitter."""

    def __init__(self, amount: float) -> None:
        super().__init__()
        self.amount = amount

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not inpt.is_floating_point():
            raise TypeError("RandomChannelScale expects float pixels in [0, 1]; put it after ToDtype")
        scale = torch.empty(inpt.shape[-3], 1, 1).uniform_(1 - self.amount, 1 + self.amount)
        return (inpt * scale.to(inpt.dtype)).clamp_(0.0, 1.0)


class MiniPlacesAugment(v2.Transform):
    """The original MiniPlaces training augmentation as **one** resampling of the decoded image.

    The same random draws, in the same order, as the chain ``RandomInterpolationResize(size * 9/8)`` ->
    ``RandomHorizontalFlip`` -> ``RandomRotateCrop(degrees)`` -> ``RandomResizedCrop(size, scale, ratio)``
    -> ``ToDtype(float)`` -> ``RandomChannelScale(colour)``, hence the same geometry; but the three resamplings
    (resize, rotation, resized crop) are composed into one map from output pixel to source position and done by
    a single ``grid_sample`` (bilinear or bicubic, the drawn interpolation) on the float image. Faster (one pass
    over 128x128 outputs instead of three passes and two uint8 round trips) and sharper (one interpolation, not
    three). The resized crop, which mostly enlarges, is not antialiased here; the chain's ``RandomResizedCrop``
    applies antialiasing when it shrinks.

    Input: ``uint8`` or float image ``(C, H, W)``; output float32 ``(C, size, size)`` in [0, 1].
    """

    def __init__(
        self,
        size: int,
        degrees: float = 15.0,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (0.8, 1.2),
        colour: float = 0.15,
    ) -> None:
        super().__init__()
        self.size, self.degrees, self.colour = size, degrees, colour
        self.resize = RandomInterpolationResize(size * 9 // 8)
        self.crop = v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        side = self.size * 9 // 8  # torchvision's resize of the shorter side: the longer one is truncated
        h1, w1 = (side, int(side * w / h)) if h <= w else (int(side * h / w), side)
        mode = self.resize.make_params(flat_inputs)["mode"]
        flip = bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip draws one number, flips below p = 0.5
        angle = float(torch.empty(()).uniform_(-self.degrees, self.degrees))
        cw, ch = inscribed_rect(w1, h1, math.radians(angle))
        ch, cw = max(1, int(ch)), max(1, int(cw))
        box = self.crop.make_params([torch.empty(0, ch, cw)])  # draws only; reads nothing but the size
        scale = torch.empty(flat_inputs[0].shape[-3], 1, 1).uniform_(1 - self.colour, 1 + self.colour)
        return dict(mode=mode, flip=flip, angle=angle, resized=(h1, w1), inscribed=(ch, cw), box=box, scale=scale)

    def _source(self, params: dict[str, Any], gx: float, gy: float) -> tuple[float, float]:
        """Where output position ``(gx, gy)`` (``grid_sample``'s normalized units, [-1, 1]) samples the source."""
        (h1, w1), (ch, cw), box = params["resized"], params["inscribed"], params["box"]
        # output -> the crop box in the inscribed rectangle -> the rotated image it was centre-cropped from
        x = box["left"] + (gx + 1) / 2 * box["width"] - 0.5 + round((w1 - cw) / 2.0) - (w1 - 1) / 2
        y = box["top"] + (gy + 1) / 2 * box["height"] - 0.5 + round((h1 - ch) / 2.0) - (h1 - 1) / 2
        # the rotation's inverse map (torchvision's own matrix for rotate(angle) about the centre)
        a, b, c, d, e, f = _get_inverse_affine_matrix([0.0, 0.0], -params["angle"], [0.0, 0.0], 1.0, [0.0, 0.0])
        xr, yr = a * x + b * y + c + (w1 - 1) / 2, d * x + e * y + f + (h1 - 1) / 2
        if params["flip"]:
            xr = (w1 - 1) - xr
        return (xr + 0.5) * 2 / w1 - 1, (yr + 0.5) * 2 / h1 - 1  # the resized image spans the source exactly

    def source_map(self, params: dict[str, Any]) -> tuple[float, float, float, float, float, float]:
        """The drawn geometry as one affine map, row-major ``(a, b, c, d, e, f)``: output position ``(gx, gy)``
        samples the source at ``(a gx + b gy + c, d gx + e gy + f)``, all in ``grid_sample``'s normalized units
        (``align_corners=False``). Every step of the chain is affine, so is their composition: read off at three
        points. The one definition of the geometry, for this transform and for the batched
        :func:`resample_batch` (:mod:`visionlab.data.device_augment`)."""
        o, ex, ey = self._source(params, 0, 0), self._source(params, 1, 0), self._source(params, 0, 1)
        return ex[0] - o[0], ey[0] - o[0], o[0], ex[1] - o[1], ey[1] - o[1], o[1]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        image = inpt.float().div_(255) if not inpt.is_floating_point() else inpt.float()
        theta = torch.tensor([self.source_map(params)], dtype=torch.float32).view(1, 2, 3)
        bicubic = torch.tensor([params["mode"] == InterpolationMode.BICUBIC])
        return resample_batch(image.unsqueeze(0), theta, bicubic, params["scale"].unsqueeze(0), self.size)[0]


def affine_grids(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``grid_sample`` positions ``(B, size, size, 2)`` of the affine maps ``theta`` ``(B, 2, 3)`` (float32,
    :meth:`MiniPlacesAugment.source_map`) at the output pixel centres: each coordinate is laid out as an outer sum
    of one term along x and one along y (``affine_grid`` computes the same, 10x slower here)."""
    t = (torch.arange(size, dtype=torch.float32, device=theta.device) * 2 + 1) / size - 1  # output pixel centres
    along_x = theta[:, :, 0, None] * t  # (B, 2, size)
    along_y = theta[:, :, 1, None] * t + theta[:, :, 2, None]
    return torch.stack([along_y[:, k, :, None] + along_x[:, k, None, :] for k in (0, 1)], dim=-1)


def resample_batch(
    images: torch.Tensor, theta: torch.Tensor, bicubic: torch.Tensor, scale: torch.Tensor, size: int
) -> torch.Tensor:
    """The resampling step of :class:`MiniPlacesAugment` for a batch: float images ``(B, C, H, W)`` in [0, 1],
    their maps ``theta`` ``(B, 2, 3)`` float32, which ones sample bicubic ``bicubic`` ``(B,)`` bool (on the CPU:
    it splits the batch, one ``grid_sample`` per interpolation, without a device sync), channel factors ``scale``
    ``(B, C, 1, 1)`` -> float32 ``(B, C, size, size)`` in [0, 1]. Out-of-image positions read zeros (the rotated
    crop never reaches them; a batch padded to one size keeps that true). One image at a time gives the same
    numbers as the whole batch: ``grid_sample`` treats every image alone."""
    grids = affine_grids(theta, size)
    out = images.new_empty((images.shape[0], images.shape[1], size, size))
    for mode, chosen in (("bilinear", ~bicubic), ("bicubic", bicubic)):
        if bool(chosen.all()):
            out = torch.nn.functional.grid_sample(images, grids, mode=mode, padding_mode="zeros", align_corners=False)
        elif bool(chosen.any()):
            index = chosen.nonzero().squeeze(1).to(images.device)
            out[index] = torch.nn.functional.grid_sample(
                images[index], grids[index], mode=mode, padding_mode="zeros", align_corners=False
            )
    return (out * scale).clamp_(0.0, 1.0)


_TO_FLOAT = v2.ToDtype(torch.float32, scale=True)


def miniplaces_chain(image_size: int) -> v2.Compose:
    """The original MiniPlaces augmentation as the chain of transforms it is defined by (reference for
    :class:`MiniPlacesAugment`, which draws the same numbers and resamples once)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            RandomInterpolationResize(image_size * 9 // 8),
            v2.RandomHorizontalFlip(),
            RandomRotateCrop(15.0),
            v2.RandomResizedCrop(image_size, scale=(0.25, 1.0), ratio=(0.8, 1.2), antialias=True),
            _TO_FLOAT,
            RandomChannelScale(0.15),
        ]
    )


def train_transform(recipe: str, image_size: int) -> v2.Compose:
    """Training augmentation.

    ``"miniplaces"`` (the original recipe, also used for ImageFolder trees): shorter side to
    ``image_size * 9/8`` (144 for 128) with a random interpolation, horizontal flip, rotation ±15° cropped to
    the inscribed rectangle, random-sized crop to ``image_size`` (area 0.25-1, aspect 0.8-1.2), per-channel
    colour scaling ±15%. ``"small"`` (CIFAR-10: images already at model size): padded random crop (1/14 of
    the side, 2 px at 32) and horizontal flip. ``"flip"`` (Fashion-MNIST): horizontal flip only, which trains
    faster than with crops within the demo's 10-minute budget (see BENCHMARKS.md).
    """
    if recipe == "miniplaces":  # the chain, composed into one resampling: MiniPlacesAugment (same draws)
        return v2.Compose([v2.ToImage(), v2.RGB(), MiniPlacesAugment(image_size, 15.0, (0.25, 1.0), (0.8, 1.2), 0.15)])
    if recipe == "small":
        pad = max(1, image_size // 14)
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomCrop(image_size, padding=pad),
                v2.RandomHorizontalFlip(),
                _TO_FLOAT,
            ]
        )
    if recipe == "flip":
        return v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(), _TO_FLOAT])
    raise ValueError(f"unknown transform recipe {recipe!r}")


def eval_transform(recipe: str, image_size: int, in_channels: int = 3) -> v2.Compose:
    """Evaluation: ``"miniplaces"`` resizes the shorter side to ``image_size * 9/8`` then centre-crops
    ``image_size``; ``"small"`` resizes to ``image_size`` only when needed (arbitrary images in ``predict``)."""
    to_channels = [v2.RGB()] if in_channels == 3 else [v2.Grayscale(1)]
    if recipe == "miniplaces":
        return v2.Compose(
            [
                v2.ToImage(),
                *to_channels,
                v2.Resize(image_size * 9 // 8, antialias=True),
                v2.CenterCrop(image_size),
                _TO_FLOAT,
            ]
        )
    if recipe in ("small", "flip"):
        return v2.Compose(
            [
                v2.ToImage(),
                *to_channels,
                v2.Resize((image_size, image_size), antialias=True),
                _TO_FLOAT,
            ]
        )
    raise ValueError(f"unknown transform recipe {recipe!r}")


# Transforms that draw nothing at random and keep uint8 pixels: what may run once, before an image is cached.
# Exact types: a subclass (or v2.RandomResize, v2.RandomResizedCrop...) may draw at random.
_DETERMINISTIC = (v2.ToImage, v2.RGB, v2.Grayscale, v2.Resize, v2.CenterCrop)


def split_deterministic(transform: Any) -> tuple[Any, Any]:
    """Split ``transform`` into ``(prepare, rest)`` with ``rest(prepare(x)) == transform(x)``, where ``prepare``
    is the longest leading run of a :class:`v2.Compose` that draws nothing at random and keeps ``uint8`` pixels
    (``ToImage``, ``RGB``, ``Grayscale``, ``Resize``, ``CenterCrop``). ``prepare`` may then run once per image
    and be cached (:class:`visionlab.data.decode.ImageCache`) while ``rest`` runs every time, drawing the same
    random numbers as ``transform`` would. Anything but a ``Compose`` gives ``prepare = v2.Identity()``.

    The evaluation recipes are deterministic up to the float conversion; the ``"miniplaces"`` training recipe
    stops after ``RGB``, since its resize draws the interpolation at random."""
    steps = list(transform.transforms) if isinstance(transform, v2.Compose) else []
    k = 0
    while k < len(steps) and type(steps[k]) in _DETERMINISTIC:
        k += 1
    if k == 0:
        return v2.Identity(), transform
    return v2.Compose(steps[:k]), v2.Compose(steps[k:]) if k < len(steps) else v2.Identity()


def to_float_transform() -> v2.Compose:
    """uint8 image tensor -> float32 in [0, 1], nothing else (evaluation of in-memory datasets)."""
    return v2.Compose([v2.ToImage(), _TO_FLOAT])
