"""A synthetic MiniPlaces: the real set's size, layout and file format, with procedural classes a CNN can learn.

Why: the real MiniPlaces cannot always be downloaded (no network on a lent GPU machine, MIT's server down), yet
the input pipeline, the epoch time and the accuracy curves at its size are what a user of the course's system
brings. :func:`synth_miniplaces` writes what :func:`~visionlab.data.load_dataset` reads as ``miniplaces:ROOT``::

    ROOT/images/train/s/scene_000/00000001.jpg ...   1000 a class for 100,000 images and 100 classes
    ROOT/images/val/00000001.jpg ...                 labels listed in val.txt, as the real set's
    ROOT/train.txt       "train/s/scene_000/00000001.jpg 0", sorted by class then number (the real order)
    ROOT/val.txt         "val/00000001.jpg 0"
    ROOT/categories.txt  "/s/scene_000 0"
    ROOT/synth.json      the settings it was made with (a later run with the same settings completes it)

Every image is a 128x128 RGB baseline JPEG. Train image ``i`` has label ``i % classes``; val image ``j`` has label
``j % classes``.

**The classes.** Class ``c`` is a seeded "scene" drawn once from ``(seed, c)``: a sky/ground gradient (two
colours, a horizon height and softness), a sinusoidal texture (frequency, orientation, colour, on the sky or the
ground) and three shapes (superellipses from diamond to rectangle: centre, radii, angle, colour). Every colour is
one of a palette of six shared by all classes (plus a little jitter), so colours alone tell few classes apart.
Each image draws, from ``(seed, split, index)`` alone, a view of its class's scene: a similarity transform of the
whole scene (scale 0.8-1.25, rotation +-25 degrees, shift +-25% of the side, a mirror half the time), each shape
moved, resized and dropped (20%) on its own, two distractor shapes and up to half of the background of other
classes, a colour gain (0.65-1.35) and offset (+-0.15) per channel, and noise (smooth, 16x16 upsampled, plus per
pixel). So no pixel, colour or position gives the class away: a nearest-class-mean classifier on 16x16
average-pooled pixels gets 59.5% of 200 val images right with 10 classes (40 train images each; chance 10%) and
20.6% of 500 with 100 classes (20 each; chance 1%), seed 0; ``tests/data/test_synth.py`` pins a smaller case. A
CNN has to learn the layouts, over epochs.

**The files.** Images are rendered a batch of 64 at a time with torch (float32, one thread: the same bytes for
any ``workers``, on one machine and torch build) and encoded with ``torchvision.io.encode_jpeg``. At the default
quality (:data:`SYNTH_QUALITY`, 90) the files average 4.4 KB (measured on the first 1,000 train images of seed 0,
100 classes: 5th-95th percentile 4.1-4.8 KB): "a few KB" each, as the real MiniPlaces JPEGs are (their sizes
not measured here: the set is unreachable from this machine); quality 75 gives 2.4 KB. Each file is written to a
temporary name and renamed, and the list files are written last (each renamed into place): a killed run never
leaves a list naming a missing or half-written image, and running it again with the same settings completes it,
skipping the images already there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import encode_jpeg

from visionlab.checks import check_integer
from visionlab.data.lists import MINIPLACES_CLASSES
from visionlab.errors import ConfigError

__all__ = ["SYNTH_IMAGE_SIZE", "SYNTH_QUALITY", "synth_batch", "synth_miniplaces"]

SYNTH_IMAGE_SIZE = 128
SYNTH_QUALITY = 90  # JPEG quality giving files of 4.4 KB on average (the real set's: a few KB each)
SPLITS = ("train", "val")
BATCH = 64  # images rendered together; batches are fixed index ranges, so a file never depends on the workers
CHUNK = 16 * BATCH  # images one worker task writes
MANIFEST = "synth.json"
GENERATOR = "visionlab synthetic miniplaces"
VERSION = 1  # bumped whenever the same settings would give other bytes
SHAPES = 3  # shapes of a class's scene
DISTRACTORS = 2  # shapes copied from other classes into each image
# numpy seed sequences: class c's scene from (seed, _CLASS_STREAM, c), image i of split s from (seed, 1 + s, i)
_CLASS_STREAM, _PALETTE_STREAM = 0, 2**32 - 1
PALETTE = 6  # colours the classes' scenes share: no class is told by its colours alone
FINE_NOISE = 0.016  # standard deviation of the per-pixel noise (pixels in [0, 1]): what sets the file size


def _class_scene(seed: int, label: int) -> np.ndarray:
    """The parameters of class ``label``'s scene, 41 numbers: sky colour [0:3], ground colour [3:6], horizon height
    [6] and softness [7], texture frequency [8] (half-cycles across the image), orientation [9], on the ground [10]
    (else the sky) and colour amplitude [11:14], then per shape [14 + 9k:23 + 9k]: centre x, y, radii x, y, angle,
    superellipse exponent, colour. Scene units: the image spans [-1, 1] before the view's transform."""
    rng = np.random.default_rng([seed, _CLASS_STREAM, label])
    palette = np.random.default_rng([seed, _PALETTE_STREAM]).uniform(0.1, 0.9, (PALETTE, 3))

    def colour() -> np.ndarray:
        return palette[rng.integers(0, PALETTE)] + rng.uniform(-0.06, 0.06, 3)

    sky, ground = colour(), colour()
    horizon = [rng.uniform(-0.5, 0.5), rng.uniform(0.02, 0.3)]
    texture = [rng.uniform(2.0, 9.0), rng.uniform(0.0, math.pi), rng.integers(0, 2), *rng.uniform(-0.2, 0.2, 3)]
    shapes = []
    for _ in range(SHAPES):  # centre x, y; radii; angle; exponent (1 diamond .. 8 rectangle); colour
        shapes.append(
            [*rng.uniform(-0.55, 0.55, 2), *rng.uniform(0.12, 0.4, 2), rng.uniform(0, math.pi),
             [1.0, 2.0, 8.0][rng.integers(0, 3)], *colour()]
        )  # fmt: skip
    return np.concatenate([sky, ground, horizon, texture, np.asarray(shapes).ravel()])


def _image_draws(seed: int, split: int, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``index`` of ``split``'s random draws: 64 uniforms in [0, 1) for its view (the whole scene's transform
    [0:5], its background [5:9], its own shapes [10:28], the distractors [28:38], colour gain and offset [40:46],
    the other class's background and its weight [46:48], that background's draws [53:57]), smooth noise
    ``(3, 16, 16)`` and pixel noise ``(3, 128, 128)``, standard normal."""
    rng = np.random.default_rng([seed, 1 + split, index])
    uniforms = rng.random(64)
    smooth = rng.standard_normal((3, 16, 16), dtype=np.float32)
    fine = rng.standard_normal((3, SYNTH_IMAGE_SIZE, SYNTH_IMAGE_SIZE), dtype=np.float32)
    return uniforms, smooth, fine


def _label(index: int, classes: int) -> int:
    return index % classes


def _view_shapes(scenes: np.ndarray, labels: np.ndarray, u: np.ndarray, classes: int) -> np.ndarray:
    """Per image ``(B, SHAPES + DISTRACTORS, 10)``: each shape's centre, radii, angle, exponent, colour and
    presence, its own shapes jittered and a few dropped, distractors from other classes placed anywhere."""
    own = scenes[labels, 14:].reshape(len(labels), SHAPES, 9).copy()
    own[:, :, 0:2] += (u[:, 10:16].reshape(-1, SHAPES, 2) - 0.5) * 0.3  # centre +-0.15
    own[:, :, 2:4] *= 0.8 + 0.4 * u[:, 16:22].reshape(-1, SHAPES, 2)  # radii x0.8-1.2
    own[:, :, 4] += (u[:, 22:25] - 0.5) * 0.6  # angle +-0.3 rad
    present = (u[:, 25:28] >= 0.2).astype(np.float64)[..., None]
    others = []
    for d in range(DISTRACTORS):  # another class (never the image's own) and one of its shapes
        other = (labels + 1 + np.floor(u[:, 28 + d] * (classes - 1)).astype(int)) % classes
        which = np.floor(u[:, 30 + d] * SHAPES).astype(int)
        shape = scenes[other, 14:].reshape(len(labels), SHAPES, 9)[np.arange(len(labels)), which].copy()
        shape[:, 0:2] = (u[:, 32 + 2 * d : 34 + 2 * d] - 0.5) * 1.6  # anywhere in the view
        shape[:, 2:4] *= 0.6 + 0.4 * u[:, 36 + d, None]  # smaller than in their own scene
        others.append(np.concatenate([shape, np.ones((len(labels), 1))], axis=1)[:, None])
    return np.concatenate([np.concatenate([own, present], axis=2), *others], axis=1)


def _grid(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene coordinates ``(B, 1, H, W)`` of each pixel under the image's view: scale, rotation, shift, mirror."""
    side = SYNTH_IMAGE_SIZE
    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1
    y, x = axis.view(1, 1, side, 1), axis.view(1, 1, 1, side)
    scale = (0.8 + 0.45 * u[:, 0]).view(-1, 1, 1, 1)
    angle = ((u[:, 1] - 0.5) * math.radians(50)).view(-1, 1, 1, 1)
    mirror = torch.where(u[:, 2] < 0.5, -1.0, 1.0).view(-1, 1, 1, 1)
    dx, dy = ((u[:, 3] - 0.5) * 0.5).view(-1, 1, 1, 1), ((u[:, 4] - 0.5) * 0.5).view(-1, 1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    xs, ys = (x * mirror - dx) / scale, (y - dy) / scale
    return cos * xs - sin * ys, sin * xs + cos * ys


def _per_image(values: torch.Tensor) -> torch.Tensor:
    """``(B,)`` or ``(B, C)`` -> ``(B, 1 or C, 1, 1)``, to broadcast over an image batch."""
    return values.view(values.shape[0], -1, 1, 1)


def _background(scene: torch.Tensor, u: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Sky/ground gradient and the texture on one of them, ``(B, 3, H, W)`` in [0, 1]-ish."""
    col = _per_image
    horizon = col(scene[:, 6] + (u[:, 5] - 0.5) * 0.3)
    ground = torch.sigmoid((sy - horizon) / col(scene[:, 7]))
    image = col(scene[:, 0:3]) * (1 - ground) + col(scene[:, 3:6]) * ground
    frequency, theta = col(scene[:, 8] * (0.85 + 0.3 * u[:, 6])), col(scene[:, 9] + (u[:, 7] - 0.5) * 0.4)
    wave = torch.sin(math.pi * frequency * (sx * torch.cos(theta) + sy * torch.sin(theta)) + col(u[:, 8]) * 6.2832)
    region = torch.where(col(scene[:, 10]) > 0.5, ground, 1 - ground)
    return image + wave * region * col(scene[:, 11:14])


def _draw_shapes(image: torch.Tensor, shapes: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Paint each shape (a superellipse with soft edges) over ``image`` in order, all images at once."""
    for s in range(shapes.shape[1]):
        p = shapes[:, s].view(-1, 10, 1, 1)
        dx, dy = sx - p[:, 0:1], sy - p[:, 1:2]
        cos, sin = torch.cos(p[:, 4:5]), torch.sin(p[:, 4:5])
        a, b = (cos * dx + sin * dy) / p[:, 2:3], (cos * dy - sin * dx) / p[:, 3:4]
        power = p[:, 5:6]
        distance = (a.abs().pow(power) + b.abs().pow(power)).pow(1 / power)
        alpha = torch.sigmoid((1 - distance) * 12) * p[:, 9:10]
        image = image * (1 - alpha) + p[:, 6:9] * alpha
    return image


def _render(scenes: np.ndarray, labels: np.ndarray, draws: list, classes: int) -> torch.Tensor:
    """The images of one batch, ``uint8`` ``(B, 3, 128, 128)``."""
    u_np = np.stack([d[0] for d in draws])
    u = torch.from_numpy(u_np).float()
    scene = torch.from_numpy(scenes[labels]).float()
    shapes = torch.from_numpy(_view_shapes(scenes, labels, u_np, classes)).float()
    sx, sy = _grid(u)
    other = (labels + 1 + np.floor(u_np[:, 46] * (classes - 1)).astype(int)) % classes
    blend = _per_image(0.5 * u[:, 47])  # another class's background shows through, up to half
    background = _background(scene, u, sx, sy) * (1 - blend)
    background = background + _background(torch.from_numpy(scenes[other]).float(), u[:, 48:], sx, sy) * blend
    image = _draw_shapes(background, shapes, sx, sy)
    gain, offset = 0.65 + 0.7 * u[:, 40:43], (u[:, 43:46] - 0.5) * 0.3
    image = image * gain.view(-1, 3, 1, 1) + offset.view(-1, 3, 1, 1)
    smooth = torch.from_numpy(np.stack([d[1] for d in draws]))
    side = SYNTH_IMAGE_SIZE
    image = image + 0.05 * F.interpolate(smooth, size=(side, side), mode="bilinear", align_corners=False)
    image = image + FINE_NOISE * torch.from_numpy(np.stack([d[2] for d in draws]))
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def synth_batch(
    split: str, indices: Sequence[int], *, classes: int = MINIPLACES_CLASSES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render images ``indices`` of ``split`` (``"train"`` or ``"val"``) as :func:`synth_miniplaces` writes them
    before JPEG encoding: ``uint8`` ``(N, 3, 128, 128)`` and their labels ``(N,)`` (``index % classes``).

    Rendered in the fixed batches of 64 indices the files are made in, one thread, so a file's pixels never depend
    on which other images were asked for.
    """
    _check_settings(classes, 1, classes, seed, SYNTH_QUALITY, 1)
    if split not in SPLITS:
        raise ConfigError(f"must be one of {', '.join(SPLITS)}, got {split!r}", field="split")
    indices = list(indices)
    for index in indices:
        check_integer(index, "indices", minimum=0)
    scenes = np.stack([_class_scene(seed, c) for c in range(classes)])
    out = torch.empty(len(indices), 3, SYNTH_IMAGE_SIZE, SYNTH_IMAGE_SIZE, dtype=torch.uint8)
    groups: dict[int, list[int]] = {}
    for position, index in enumerate(indices):
        groups.setdefault(index // BATCH, []).append(position)
    with _one_thread():
        for batch, positions in groups.items():
            full = range(batch * BATCH, batch * BATCH + BATCH)
            images = _render_range(scenes, SPLITS.index(split), full, classes, seed)
            for position in positions:
                out[position] = images[indices[position] - batch * BATCH]
    return out, torch.tensor([_label(i, classes) for i in indices])


def _render_range(scenes: np.ndarray, split: int, indices: range, classes: int, seed: int) -> torch.Tensor:
    labels = np.array([_label(i, classes) for i in indices])
    return _render(scenes, labels, [_image_draws(seed, split, i) for i in indices], classes)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block (elementwise kernels then always split the same way)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_settings(train: int, val: int, classes: int, seed: int, quality: int, workers: int) -> None:
    check_integer(classes, "classes", minimum=1)
    if classes > MINIPLACES_CLASSES:
        raise ConfigError(f"must be at most {MINIPLACES_CLASSES} (MiniPlaces' labels), got {classes}", field="classes")
    check_integer(train, "train", minimum=1)
    if train < classes:
        raise ConfigError(f"must be >= classes ({classes}): every class needs a training image, got {train}",
                          field="train")  # fmt: skip
    check_integer(val, "val", minimum=1)
    check_integer(seed, "seed", minimum=0)
    check_integer(quality, "quality", minimum=1)
    if quality > 100:
        raise ConfigError(f"must be an integer in [1, 100], got {quality}", field="quality")
    check_integer(workers, "workers", minimum=1)


def _relative_path(split: str, index: int, classes: int) -> str:
    """Image ``index``'s path under ``images/``, as the real lists write it."""
    if split == "val":
        return f"val/{index + 1:08d}.jpg"
    return f"train/{_category(_label(index, classes))[1:]}/{index // classes + 1:08d}.jpg"


def _category(label: int) -> str:
    return f"/s/scene_{label:03d}"


def _write_chunk(root: str, split: str, start: int, stop: int, classes: int, seed: int, quality: int) -> int:
    """Render and write the images ``[start, stop)`` of ``split`` not already there; returns how many it wrote.
    Runs in a worker process (or in the caller's for one worker)."""
    scenes = np.stack([_class_scene(seed, c) for c in range(classes)])
    images_dir, written = Path(root) / "images", 0
    with _one_thread():
        for first in range(start - start % BATCH, stop, BATCH):  # the batches of 64 that [start, stop) meets
            wanted = range(max(first, start), min(first + BATCH, stop))
            paths = [images_dir / _relative_path(split, i, classes) for i in wanted]
            if all(p.is_file() for p in paths):
                continue
            images = _render_range(scenes, SPLITS.index(split), range(first, first + BATCH), classes, seed)
            for i, path in zip(wanted, paths, strict=True):
                if path.is_file():
                    continue
                data = encode_jpeg(images[i - first], quality=quality)
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(path, data.numpy().tobytes())
                written += 1
    return written


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed over it: a reader (or a
    killed run) sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _settings(train: int, val: int, classes: int, seed: int, quality: int) -> dict:
    return {"generator": GENERATOR, "version": VERSION, "train": train, "val": val, "classes": classes,
            "seed": seed, "quality": quality, "image_size": SYNTH_IMAGE_SIZE}  # fmt: skip


def _claim_root(root: Path, settings: dict) -> None:
    """Make ``root`` ours: create it, or accept it empty or holding an earlier synth of the same ``settings``
    (its manifest); refuse anything else, so user data is never written over."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory", field="root")
    if root.is_dir() and any(root.iterdir()):
        manifest = root / MANIFEST
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if not isinstance(found, dict) or found.get("generator") != GENERATOR:
            raise ConfigError(
                f"{root} is not empty and holds no synthetic MiniPlaces ({MANIFEST}); refusing to write into it "
                "(give an empty or new folder)",
                field="root",
            )
        if found != settings:
            keys = [*settings, *(k for k in found if k not in settings)]
            theirs = "; ".join(f"{k} {found.get(k)!r}, not {settings.get(k)!r}" for k in keys
                               if found.get(k) != settings.get(k))  # fmt: skip
            raise ConfigError(
                f"{root} holds a synthetic MiniPlaces made with other settings ({theirs}); give the same settings "
                "to complete it, or another folder",
                field="root",
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(root / MANIFEST, (json.dumps(settings, indent=1) + "\n").encode())


def _write_lists(root: Path, train: int, val: int, classes: int) -> None:
    """categories.txt, val.txt, then train.txt (the file that marks a MiniPlaces folder), each renamed into place."""
    categories = "".join(f"{_category(c)} {c}\n" for c in range(classes))
    _write_atomic(root / "categories.txt", categories.encode())
    _write_atomic(root / "val.txt", "".join(f"{_relative_path('val', j, classes)} {_label(j, classes)}\n"
                                            for j in range(val)).encode())  # fmt: skip
    order = sorted(range(train), key=lambda i: (_label(i, classes), i))  # by class, then number: the real order
    lines = "".join(f"{_relative_path('train', i, classes)} {_label(i, classes)}\n" for i in order)
    _write_atomic(root / "train.txt", lines.encode())


def synth_miniplaces(
    root: str | Path,
    *,
    train: int = 100_000,
    val: int = 10_000,
    classes: int = MINIPLACES_CLASSES,
    seed: int = 0,
    quality: int = SYNTH_QUALITY,
    workers: int = 1,
    show_progress: bool = False,
) -> tuple[Path, int]:
    """Write a synthetic MiniPlaces into ``root`` (see the module docstring for the layout and the classes).

    Args:
        root: an empty or new folder, or one an earlier call with the same settings wrote (perhaps killed midway):
            its missing images are written, the rest kept. Anything else is refused (:class:`ConfigError`,
            ``field="root"``): user data is never written over.
        train: training images (the real set's 100,000); at least ``classes``.
        val: validation images (the real set's 10,000).
        classes: 1 to 100 (the reader's labels are MiniPlaces' 0-99).
        seed: every class and image is drawn from ``(seed, class)`` / ``(seed, split, index)``.
        quality: JPEG quality 1-100 (default 90: 4.4 KB a file on average, the real set's size).
        workers: processes rendering and encoding (the files are the same for any count).
        show_progress: a progress display on stderr (chunks of 1,024 images).

    Returns:
        ``(root, written)``: the folder (``load_dataset(f"miniplaces:{root}")`` reads it) and how many images this
        call wrote.
    """
    _check_settings(train, val, classes, seed, quality, workers)
    from visionlab.progress import progress

    root = Path(root)
    _claim_root(root, _settings(train, val, classes, seed, quality))
    tasks = [(str(root), split, start, min(start + CHUNK, count), classes, seed, quality)
             for split, count in (("train", train), ("val", val)) for start in range(0, count, CHUNK)]  # fmt: skip
    written = 0
    if workers == 1:
        for task in progress(tasks, desc="synth miniplaces", enabled=show_progress):
            written += _write_chunk(*task)
    else:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_write_chunk, *task) for task in tasks]
            for future in progress(futures, desc="synth miniplaces", enabled=show_progress):
                written += future.result()
    for leftover in (root / "images").rglob(".*.tmp"):  # of a killed run's writes (this run renamed all of its own)
        leftover.unlink()
    _write_lists(root, train, val, classes)
    return root, written
