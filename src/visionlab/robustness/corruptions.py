"""The 15 common corruptions of ImageNet-C (Hendrycks & Dietterich, ICLR 2019) at severities 1-5, seeded and batched.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(arXiv:1903.12261): four families, each corruption at five severities —

* noise: ``gaussian_noise``, ``shot_noise``, ``impulse_noise``;
* blur: ``defocus_blur``, ``glass_blur``, ``motion_blur``, ``zoom_blur``;
* weather: ``snow``, ``frost``, ``fog``;
* digital: ``brightness``, ``contrast``, ``elastic_transform``, ``pixelate``, ``jpeg_compression``.

The reference implementation is PyPI ``imagecorruptions`` (Michaelis et al. 2019, bethgelab; the ImageNet-C code
made to work at any image size), an optional dependency: ``pip install 'visionlab[corruptions]'``. It is used as
is wherever it works, through its per-corruption functions (its ``corrupt`` entry point refuses images under 32
pixels and turns grayscale into RGB). Four are written here instead, each for a stated reason:

* ``impulse_noise``: the library calls scikit-image's ``random_noise`` without an ``rng``, which since
  scikit-image 0.19 draws fresh OS entropy: not reproducible. Here the same call with a seeded ``rng``.
* ``glass_blur``: the library passes ``multichannel=True`` to scikit-image's ``gaussian`` (removed in 0.19; now
  ``channel_axis``). Here the same algorithm. Its pixel "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` is,
  on the HxWx3 arrays ImageNet-C used, a copy of ``x[h', w']`` into ``x[h, w]`` (the right-hand side holds views):
  the copy is what every published ImageNet-C number measured, and is done here for any channel count. The
  library's per-pixel Python loop is replaced by whole-array operations giving the loop's result bit for bit
  (``_glass_moves``).
* ``fog``: the library's plasma fractal allocates with ``np.float_`` (removed in NumPy 2.0). Here the same
  diamond-square fractal.
* ``motion_blur`` on grayscale images: the library's grayscale branch indexes a missing third axis. Motion blur
  is the same shift-and-sum on every channel, so a grayscale image is blurred as the 3-channel image that repeats
  it, and one channel kept (exactly the grayscale result).

One more is the library's code run faster, bit for bit the same (tested against the library):

* ``frost``: the library decodes its frost texture (a PNG or JPEG of up to 600 x 900 pixels) from disk and resizes
  it to the image for every image it corrupts, almost all of frost's time on small images. Here each texture is
  decoded once per process and resized once per image size (both cached), then cropped and blended with the same
  random draws from NumPy's global state and the same arithmetic.

Importing ``imagecorruptions`` needs ``pkg_resources`` (for the path of its frost textures), which setuptools 81
removed. :func:`imagecorruptions_module` installs, only while that import runs and only when no real
``pkg_resources`` exists, a one-function stand-in in ``sys.modules`` whose ``resource_filename`` returns the file
next to the named module (what ``pkg_resources`` returns for a package on disk); it is removed right after. This
keeps the user's setuptools as it is (a ``setuptools<81`` pin would downgrade it) and patches no installed file.

Determinism: every image is corrupted from its own seed, derived from ``(seed, image index, corruption,
severity)`` by :class:`numpy.random.SeedSequence`, so a result does not depend on the batch size, the batch order
or DataLoader workers. The library draws from NumPy's global random state: it is seeded for each image and
restored afterwards, so the caller's global stream is untouched (not thread-safe: one corruption at a time per
process, which DataLoader worker processes respect). The corruptions written here draw from a
:class:`numpy.random.Generator` of the same seed.

Pixels: float tensors in [0, 1] in and out, ``(N, C, H, W)`` with ``C`` 1 or 3, any ``H, W >=``
:data:`MIN_SIDE`; dtype and device kept. Like ImageNet-C, the corruptions take 8-bit images, so the input is
rounded to multiples of 1/255 first; the output is not rounded again. Severity 0 (or no corruption) returns the
images unchanged.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionlab.checks import check_integer
from visionlab.data.noise import IMPULSE_NOISE_AMOUNTS, NOISE_CORRUPTIONS
from visionlab.errors import ConfigError, UserError

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_FAMILIES",
    "MIN_SIDE",
    "SEVERITIES",
    "CorruptedDataset",
    "check_corruptions",
    "check_severities",
    "corrupt",
    "image_seed",
    "imagecorruptions_module",
]

# The 15 corruptions in ImageNet-C's order (also imagecorruptions' get_corruption_names("common")).
CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": NOISE_CORRUPTIONS,  # ("gaussian_noise", "shot_noise", "impulse_noise"), also trained on (--augment)
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(name for family in CORRUPTION_FAMILIES.values() for name in family)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# The smallest image side: pixelate shrinks a side to a quarter (severity 5) and needs at least one pixel left.
MIN_SIDE = 4

# (sigma of the Gaussian blur, largest pixel displacement, iterations) per severity: imagecorruptions' glass_blur.
_GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
# (fog strength, fractal roughness decay) per severity: imagecorruptions' fog.
_FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
# (weight of the image, weight of the frost texture) per severity: imagecorruptions' frost.
_FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
# imagecorruptions' frost textures (in its package folder frost/); it draws among the first five only.
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


# ------------------------------------------------------------------------------------------------ the library
@contextmanager
def _pkg_resources_stand_in() -> Iterator[None]:
    """A ``pkg_resources`` with only ``resource_filename`` in ``sys.modules`` while the block runs, when the real
    one cannot be imported (setuptools >= 81); nothing otherwise. See the module docstring."""
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        yield
        return

    def resource_filename(module_name: str, resource: str) -> str:
        """The file ``resource`` (``/``-separated, relative) next to the imported module ``module_name``."""
        return str(Path(sys.modules[module_name].__file__).parent.joinpath(*resource.split("/")))

    stand_in = types.ModuleType("pkg_resources", "visionlab's stand-in for importing imagecorruptions")
    stand_in.resource_filename = resource_filename  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]


@functools.cache
def imagecorruptions_module() -> types.ModuleType:
    """The ``imagecorruptions`` package, imported (see the module docstring for how ``pkg_resources`` is provided).

    Raises :class:`~visionlab.errors.UserError` saying how to install it when it is missing."""
    if importlib.util.find_spec("imagecorruptions") is None:
        raise UserError("common corruptions need the imagecorruptions package: pip install 'visionlab[corruptions]'")
    with _pkg_resources_stand_in(), warnings.catch_warnings():
        # scipy.ndimage.interpolation (imported by the library) and pkg_resources itself warn on import.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return importlib.import_module("imagecorruptions")


@contextmanager
def _global_numpy_seed(seed: np.random.SeedSequence) -> Iterator[None]:
    """NumPy's global random state seeded from ``seed`` inside the block, the caller's state restored after."""
    state = np.random.get_state()
    np.random.seed(seed.generate_state(8))
    try:
        yield
    finally:
        np.random.set_state(state)


def _library(name: str) -> Callable[[np.ndarray, int, np.random.SeedSequence], np.ndarray]:
    """imagecorruptions' ``name`` as a corruption of this module: uint8 ``(H, W)`` or ``(H, W, 3)`` in, float
    [0, 1] of the same shape out."""

    def apply(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
        from PIL import Image

        function = imagecorruptions_module().corruption_dict[name]
        with _global_numpy_seed(seed):
            out = function(Image.fromarray(image), severity)
        return np.asarray(out, dtype=np.float64) / 255.0

    return apply


# ------------------------------------------------------------------------------------------------ written here
def _impulse_noise(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Salt-and-pepper noise on a share ``IMPULSE_NOISE_AMOUNTS[severity - 1]`` of the values (scikit-image's,
    seeded; the amounts are imagecorruptions', kept in :mod:`visionlab.data.noise` for training on them too)."""
    from skimage.util import random_noise

    amount = IMPULSE_NOISE_AMOUNTS[severity - 1]
    return random_noise(image / 255.0, mode="s&p", amount=amount, rng=np.random.default_rng(seed))


def _glass_blur(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Blur, move each inner pixel to a random neighbour up to ``delta`` away (row by row from the bottom right,
    ``iterations`` times), blur again: frosted glass (imagecorruptions' algorithm, see the module docstring)."""
    from skimage.filters import gaussian

    sigma, delta, iterations = _GLASS[severity - 1]
    axis = -1 if image.ndim == 3 else None
    x = np.uint8(gaussian(image / 255.0, sigma=sigma, channel_axis=axis) * 255)
    rows, cols = len(range(x.shape[0] - delta, delta, -1)), len(range(x.shape[1] - delta, delta, -1))
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        moves = rng.integers(-delta, delta, size=(rows, cols, 2))  # (dx, dy) in [-delta, delta)
        x = _glass_moves(x, moves, delta)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=axis), 0, 1)


def _glass_moves(x: np.ndarray, moves: np.ndarray, delta: int) -> np.ndarray:
    """Glass blur's pixel moves, vectorized: the result of the loop ::

        for i, h in enumerate(range(H - delta, delta, -1)):      # rows from the bottom
            for j, w in enumerate(range(W - delta, delta, -1)):  # right to left
                dx, dy = moves[i, j]
                x[h, w] = x[h + dy, w + dx]

    bit for bit, on ``x`` of shape ``(H, W)`` or ``(H, W, C)`` (a new array; ``x`` is kept). In the loop a pixel
    reads its source's new value when the loop wrote that source before (it lies below, or to the right in the same
    row, inside the moved region), else its original value; so a pixel's value is the original value at the end
    of its chain of such sources, found by pointer jumping (log of the longest chain in passes of whole-array
    operations instead of one Python step per pixel). ``moves``: ``(rows, cols, 2)`` integers ``(dx, dy)`` in
    ``[-delta, delta)``, one per pixel of the region in the loop's order.
    """
    height, width = x.shape[:2]
    rows, cols = moves.shape[:2]
    if rows <= 0 or cols <= 0:
        return x.copy()
    h = np.arange(height - delta, delta, -1)[:, None]  # the region's rows and columns in the loop's order
    w = np.arange(width - delta, delta, -1)[None, :]
    source_h, source_w = h + moves[..., 1], w + moves[..., 0]
    # The source's position in the loop's order, and whether the loop wrote it before this pixel.
    step = ((height - delta) - source_h) * cols + ((width - delta) - source_w)
    inside = (source_h > delta) & (source_h <= height - delta) & (source_w > delta) & (source_w <= width - delta)
    follow = (inside & (step < np.arange(rows * cols).reshape(rows, cols))).ravel()
    pointer, source = step.ravel(), (source_h * width + source_w).ravel()
    while follow.any():  # a pixel that follows takes over its source's current source, pointer and state
        chasing = np.flatnonzero(follow)
        ahead = pointer[chasing]
        source[chasing], pointer[chasing], follow[chasing] = source[ahead], pointer[ahead], follow[ahead]
    flat = x.reshape(height * width, -1)
    out = flat.copy()
    out[(h * width + w).ravel()] = flat[source]
    return out.reshape(x.shape)


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size)`` height map in [0, 1] by the diamond-square algorithm (``size`` a power of 2), its random
    amplitude divided by ``decay`` at each halving of the step: imagecorruptions' ``plasma_fractal``."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        grid[half:size:step, half:size:step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        centres = grid[half:size:step, half:size:step]
        for axis, target in ((0, (slice(0, size, step), slice(half, size, step))),
                             (1, (slice(half, size, step), slice(0, size, step)))):  # fmt: skip
            total = centres + np.roll(centres, 1, axis=axis) + corners + np.roll(corners, -1, axis=1 - axis)
            grid[target] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    top = grid.max()
    return grid / top if top > 0 else grid


def _fog(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
    """A plasma fractal added to the image, then the contrast lowered so the brightest pixel keeps its value
    (imagecorruptions' fog)."""
    strength, decay = _FOG[severity - 1]
    height, width = image.shape[:2]
    x = image / 255.0
    brightest = x.max()
    size = 1 << (max(height, width) - 1).bit_length()  # the next power of 2
    layer = _plasma_fractal(size, decay, np.random.default_rng(seed))[:height, :width]
    x = x + strength * (layer[..., None] if x.ndim == 3 else layer)
    return np.clip(x * brightest / (brightest + strength), 0, 1)


@functools.cache
def _frost_file(index: int) -> np.ndarray:
    """imagecorruptions' frost texture ``index`` as OpenCV reads it (BGR uint8 ``(H, W, 3)``), read once per process
    and kept read-only."""
    import cv2

    path = Path(imagecorruptions_module().__file__).parent / "frost" / _FROST_FILES[index]
    texture = cv2.imread(str(path))
    if texture is None:
        raise UserError(f"{path}: imagecorruptions' frost texture cannot be read; reinstall imagecorruptions")
    texture.flags.writeable = False
    return texture


@functools.lru_cache(maxsize=16)
def _frost_texture(index: int, height: int, width: int) -> np.ndarray:
    """Frost texture ``index`` resized to cover a ``height x width`` image with a margin to crop from: the
    library's scale (1, else the larger ratio of the image's side to the texture's) times 1.1, bicubic. Cached per
    image size (read-only): the library resizes it again for every image."""
    import cv2

    frost = _frost_file(index)
    fh, fw = frost.shape[:2]
    scale = 1
    if fh < height and fw >= width:
        scale = height / fh
    elif fh >= height and fw < width:
        scale = width / fw
    elif fh < height and fw < width:
        scale = np.maximum(height / fh, width / fw)
    scale *= 1.1
    resized = cv2.resize(
        frost, dsize=(int(np.ceil(fw * scale)), int(np.ceil(fh * scale))), interpolation=cv2.INTER_CUBIC
    )
    resized.flags.writeable = False
    return resized


def _frost(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
    """imagecorruptions' frost (see the module docstring): the image dimmed and a random crop of a random frost
    texture added (its luminance for a grayscale image), the same draws from NumPy's global state seeded by
    ``seed``."""
    imagecorruptions_module()  # its textures are the library's: missing, it says how to install it (cached call)
    weight, frost_weight = _FROST[severity - 1]
    height, width = image.shape[:2]
    with _global_numpy_seed(seed):
        texture = _frost_texture(np.random.randint(5), height, width)
        top = np.random.randint(0, texture.shape[0] - height)
        left = np.random.randint(0, texture.shape[1] - width)
    crop = texture[top : top + height, left : left + width]
    # Grayscale: the library's rgb2gray of the BGR crop (its weights, in that order); RGB: the crop as RGB.
    crop = np.dot(crop[..., :3], [0.2989, 0.5870, 0.1140]) if image.ndim == 2 else crop[..., [2, 1, 0]]
    return np.clip(weight * image + frost_weight * crop, 0, 255) / 255.0


def _motion_blur(image: np.ndarray, severity: int, seed: np.random.SeedSequence) -> np.ndarray:
    """imagecorruptions' motion blur; a grayscale image as the RGB image repeating it (see the module docstring)."""
    if image.ndim == 3:
        return _library("motion_blur")(image, severity, seed)
    return _library("motion_blur")(np.repeat(image[..., None], 3, axis=2), severity, seed)[..., 0]


_FUNCTIONS: dict[str, Callable[[np.ndarray, int, np.random.SeedSequence], np.ndarray]] = {
    **{name: _library(name) for name in CORRUPTIONS},
    "impulse_noise": _impulse_noise,
    "glass_blur": _glass_blur,
    "fog": _fog,
    "motion_blur": _motion_blur,
    "frost": _frost,
}


# ------------------------------------------------------------------------------------------------ checks
def check_corruptions(names: str | Sequence[str] | None, field: str = "corruptions") -> tuple[str, ...]:
    """The corruption names of ``names`` (``None``: all of :data:`CORRUPTIONS`), each once, in the order given.

    Raises :class:`~visionlab.errors.ConfigError` (``field``) for an unknown name, listing the known ones."""
    if names is None:
        return CORRUPTIONS
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        got = f"unknown corruption {unknown[0]!r}" if unknown else "no corruption given"
        raise ConfigError(f"{got}; the corruptions are {', '.join(CORRUPTIONS)}", field=field)
    return tuple(dict.fromkeys(names))


def check_severities(severities: Sequence[int] | None, field: str = "severities") -> tuple[int, ...]:
    """The severities of ``severities`` (``None``: 1-5), each once, in the order given; each an integer in 1-5.

    Raises :class:`~visionlab.errors.ConfigError` (``field``) otherwise."""
    if severities is None:
        return SEVERITIES
    values = list(severities)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, int) or s not in SEVERITIES]
    if bad or not values:
        got = repr(bad[0]) if bad else "none"
        raise ConfigError(f"severities must be integers in 1-5, got {got}", field=field)
    return tuple(dict.fromkeys(values))


def image_seed(seed: int, index: int, corruption: str, severity: int) -> np.random.SeedSequence:
    """The seed of image ``index`` under ``corruption`` at ``severity``: a :class:`numpy.random.SeedSequence` of
    the four (the corruption by its position in :data:`CORRUPTIONS`), so every image, corruption and severity
    draws its own independent stream whatever the batching."""
    check_integer(seed, "seed", minimum=0)
    check_integer(index, "indices", minimum=0)
    return np.random.SeedSequence([seed, index, CORRUPTIONS.index(corruption), severity])


def _check_setting(corruption: str | None, severity: int, seed: int) -> None:
    """A known corruption (or None), a severity in 0-5 and a non-negative seed, else ConfigError naming which."""
    if corruption is not None:
        check_corruptions([corruption], field="corruption")
    if not isinstance(severity, int) or isinstance(severity, bool) or not 0 <= severity <= SEVERITIES[-1]:
        raise ConfigError(f"must be an integer in 0-5, got {severity!r}", field="severity")
    check_integer(seed, "seed", minimum=0)


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"must be a float (N, C, H, W) tensor, got {what}", field="images")
    if images.shape[1] not in (1, 3) or min(images.shape[2:]) < MIN_SIDE:
        raise ConfigError(
            f"must have 1 or 3 channels and sides >= {MIN_SIDE}, got shape {tuple(images.shape)}", field="images"
        )
    if images.numel():
        lo, hi = torch.stack(torch.aminmax(images.detach())).tolist()
        if not (lo >= 0.0 and hi <= 1.0):  # NaN fails too
            raise ConfigError(f"must be pixels in [0, 1], got values in [{lo:.4g}, {hi:.4g}]", field="images")


# ------------------------------------------------------------------------------------------------ batches
def corrupt(
    images: torch.Tensor,
    corruption: str | None,
    severity: int,
    *,
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> torch.Tensor:
    """``images`` under ``corruption`` at ``severity``, each image from its own seed (:func:`image_seed`).

    Args:
        images: ``(N, C, H, W)`` float pixels in [0, 1], ``C`` 1 or 3, sides >= :data:`MIN_SIDE`, any device.
        corruption: one of :data:`CORRUPTIONS`; ``None``: no corruption.
        severity: 1 (mild) to 5 (strong), ImageNet-C's parameters; 0: no corruption.
        seed: a non-negative integer; with ``indices``, it fixes every random draw.
        indices: each image's index in its dataset, which seeds it with ``seed`` (default ``0 .. N-1``): give the
            dataset positions to corrupt a batch exactly as the same images in any other batching.

    Returns a new tensor of the shape, dtype and device of ``images``, in [0, 1]; ``images`` itself is not
    changed. Computed on the CPU, image by image (NumPy, OpenCV, scikit-image), so a DataLoader's worker
    processes (:class:`CorruptedDataset`) are the way to spread it over cores.

    Example::

        >>> x = torch.rand(8, 3, 32, 32)
        >>> corrupt(x, "fog", 3, seed=0).shape
        torch.Size([8, 3, 32, 32])
    """
    _check_setting(corruption, severity, seed)
    _check_batch(images)
    indices = list(range(images.shape[0])) if indices is None else [int(i) for i in indices]
    if len(indices) != images.shape[0]:
        raise ConfigError(f"{len(indices)} indices for {images.shape[0]} images", field="indices")
    if corruption is None or severity == 0:
        return images.clone()
    function = _FUNCTIONS[corruption]
    pixels = images.detach().to("cpu", torch.float64).mul(255).round().to(torch.uint8).numpy()
    out = np.empty(pixels.shape, dtype=np.float64)
    for k, index in enumerate(indices):
        image = pixels[k, 0] if pixels.shape[1] == 1 else np.ascontiguousarray(pixels[k].transpose(1, 2, 0))
        result = np.clip(function(image, severity, image_seed(seed, index, corruption, severity)), 0.0, 1.0)
        out[k] = result[None] if result.ndim == 2 else result.transpose(2, 0, 1)
    return torch.from_numpy(out).to(device=images.device, dtype=images.dtype)


class CorruptedDataset(Dataset):
    """``dataset`` with every image under ``corruption`` at ``severity``, image ``i`` seeded by ``(seed, i)``.

    Items are ``(image, label)`` as ``dataset``'s, the image a ``(C, H, W)`` float tensor in [0, 1]. Corrupting
    in ``__getitem__`` lets a :class:`~torch.utils.data.DataLoader`'s worker processes share the work; the
    images are the same with any batch size, order or number of workers.

    Args:
        dataset: any map-style dataset of ``(image, label)``.
        corruption: one of :data:`CORRUPTIONS`, or ``None`` (images unchanged).
        severity: 0-5 (0: unchanged).
        seed: as for :func:`corrupt`.
    """

    def __init__(self, dataset: Any, corruption: str | None, severity: int, *, seed: int = 0) -> None:
        _check_setting(corruption, severity, seed)
        self.dataset, self.corruption, self.severity, self.seed = dataset, corruption, severity, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        batch = corrupt(image[None], self.corruption, self.severity, seed=self.seed, indices=[index])
        return batch[0], label

    def __repr__(self) -> str:
        return f"CorruptedDataset({self.corruption}, severity={self.severity}, seed={self.seed}, {len(self)} images)"
