"""Input pipeline speed, two measurements.

1. In-memory dataset (Fashion-MNIST, 60k training images): the batch path (:class:`visionlab.data.InMemoryLoader`,
   one gather + batch flip) vs the per-image DataLoader path the trainer used before (``transforms.v2`` per image,
   collation; with 0 and 1 worker processes).
2. File dataset in MiniPlaces layout (``train.txt`` + ``images/``): ``--files`` random 128x128 JPEGs (smooth
   colour fields plus noise, about the size of MiniPlaces' photos, quality 75) written to a temporary folder, and
   the original training augmentation (``train_transform("miniplaces", 128)``) per image through a DataLoader
   with each of ``--workers``: visionlab's file pipeline (``ImageListDataset``: ``decode_jpeg`` to a ``uint8``
   tensor, ``transforms.v2`` on tensors) vs plain PIL (``open`` + ``convert("RGB")``) and
   ``torchvision.transforms`` (v1) doing the same augmentation on PIL images. Also shown, not in the ratio:
   visionlab with ``cache=True`` (decoded once before timing, the augmentation only).

Only the loading is timed (one pass over the split, batch 128, the images as the model receives them); rounds
alternate the variants and each ratio is the median of the per-round ratios.

    python bench/input.py [--rounds 5] [--data-root data] [--files 2000] [--workers 0 1]
    python bench/input.py --quick    # 1 round, 2048 Fashion-MNIST images, 64 files, 0 workers: checks it runs

Prints the tables, then one JSON line ``{"in_memory_images_per_s": …, "per_image_images_per_s": …,
"in_memory_ratio": …, "file_images_per_s": …, "pil_images_per_s": …, "ratio": …, …}``: ``in_memory_ratio`` is
in-memory ÷ per-image with 0 workers (the set-up the demo used before), ``ratio`` visionlab's file pipeline ÷ the
PIL + v1 pipeline with the first of ``--workers``; ``ratio_<w>_workers`` the same with each other worker count.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F1

from visionlab.data import InMemoryLoader, load_dataset
from visionlab.data.lists import ListEntry, parse_list_file
from visionlab.data.transforms import inscribed_rect

IMAGE_SIZE = 128


def one_pass(loader) -> float:
    """Images per second of one pass over ``loader``."""
    n, start = 0, time.perf_counter()
    for images, _ in loader:
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def alternate(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Images/s of each variant per round, the order reversed every other round."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
            rates[name].append(one_pass(variants[name]()))
    return rates


def print_table(rates: dict[str, list[float]]) -> None:
    print(f"{'variant':<34} {'images/s (median)':>18} {'min':>10} {'max':>10}")
    for name, values in rates.items():
        print(f"{name:<34} {statistics.median(values):>18,.0f} {min(values):>10,.0f} {max(values):>10,.0f}")


def paired_ratio(fast: list[float], slow: list[float]) -> float:
    return statistics.median(f / s for f, s in zip(fast, slow, strict=True))


# --------------------------------------------------------------------------------------------- in memory
def in_memory(args: argparse.Namespace) -> dict[str, float]:
    train = load_dataset("fashion-mnist", data_root=args.data_root).train
    if args.limit:
        train = torch.utils.data.Subset(train, range(args.limit))
    gen = torch.Generator().manual_seed(0)
    rates = alternate(
        {
            "in-memory batches": lambda: InMemoryLoader(train, 128, shuffle=True, drop_last=True, generator=gen),
            "per-image, 0 workers": lambda: DataLoader(train, 128, shuffle=True, drop_last=True, num_workers=0),
            "per-image, 1 worker": lambda: DataLoader(train, 128, shuffle=True, drop_last=True, num_workers=1),
        },
        args.rounds,
    )
    print("Fashion-MNIST, in memory")
    print_table(rates)
    fast, slow = rates["in-memory batches"], rates["per-image, 0 workers"]
    return {
        "in_memory_images_per_s": round(statistics.median(fast)),
        "per_image_images_per_s": round(statistics.median(slow)),
        "in_memory_ratio": round(paired_ratio(fast, slow), 2),
    }


# --------------------------------------------------------------------------------------------- files
def write_miniplaces(root: Path, n: int, seed: int = 0) -> None:
    """``n`` 128x128 JPEGs in MiniPlaces layout: ``images/train/<k>.jpg`` listed in ``train.txt``, and one
    validation image (the reader wants a ``val.txt``). Content: a random 8x8 colour grid enlarged bicubically
    plus noise (sigma 8), so the files compress like photos rather than like pure noise."""
    rng = np.random.default_rng(seed)
    (root / "images/train").mkdir(parents=True)
    lines = []
    for k in range(n):
        grid = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        field = np.asarray(grid.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
        pixels = np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"images/train/{k:08d}.jpg", quality=75)
        lines.append(f"train/{k:08d}.jpg {k % 100}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text(lines[0] + "\n")


class PilRotateCrop:
    """v1 twin of :class:`visionlab.data.transforms.RandomRotateCrop` on PIL images."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def __call__(self, img: Image.Image) -> Image.Image:
        angle = float(torch.empty(()).uniform_(-self.degrees, self.degrees))
        cw, ch = inscribed_rect(img.width, img.height, math.radians(angle))
        rotated = F1.rotate(img, angle, interpolation=InterpolationMode.BILINEAR)
        return F1.center_crop(rotated, [max(1, int(ch)), max(1, int(cw))])


def channel_scale(x: torch.Tensor, amount: float = 0.15) -> torch.Tensor:
    return (x * torch.empty(x.shape[0], 1, 1).uniform_(1 - amount, 1 + amount)).clamp_(0.0, 1.0)


def pil_train_transform(image_size: int) -> T.Compose:
    """The original MiniPlaces augmentation with ``torchvision.transforms`` (v1) on PIL images (see
    :func:`visionlab.data.transforms.train_transform`)."""
    side = image_size * 9 // 8
    return T.Compose([
        T.RandomChoice([T.Resize(side, InterpolationMode.BILINEAR), T.Resize(side, InterpolationMode.BICUBIC)]),
        T.RandomHorizontalFlip(),
        PilRotateCrop(15.0),
        T.RandomResizedCrop(image_size, scale=(0.25, 1.0), ratio=(0.8, 1.2)),
        T.ToTensor(),
        channel_scale,
    ])  # fmt: skip


class PilListDataset(Dataset):
    """The plain way: PIL open + convert, then the v1 transform."""

    def __init__(self, entries: list[ListEntry], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.entries, self.transform = entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        entry = self.entries[index]
        with Image.open(entry.path) as img:
            return self.transform(img.convert("RGB")), entry.label


def file_loader(dataset: Dataset, workers: int) -> DataLoader:
    return DataLoader(dataset, 128, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0))


def files(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="visionlab-bench-input-") as tmp:
        root = Path(tmp)
        write_miniplaces(root, args.files)
        ours = load_dataset(f"miniplaces:{root}", image_size=IMAGE_SIZE, check_images=False).train
        cached = load_dataset(f"miniplaces:{root}", image_size=IMAGE_SIZE, check_images=False, cache=True).train
        plain = PilListDataset(
            parse_list_file(root / "train.txt", root / "images", 100), pil_train_transform(IMAGE_SIZE)
        )
        summary: dict[str, float] = {}
        for w in args.workers:
            names = {k: f"{k}, {w} worker{'s' if w != 1 else ''}" for k in ("visionlab", "PIL + v1", "cached")}
            rates = alternate(
                {
                    names["visionlab"]: lambda w=w: file_loader(ours, w),
                    names["PIL + v1"]: lambda w=w: file_loader(plain, w),
                    names["cached"]: lambda w=w: file_loader(cached, w),
                },
                args.rounds,
            )
            print(f"\n{args.files} MiniPlaces-format JPEGs, training augmentation, {w} workers")
            print_table(rates)
            ratio = round(paired_ratio(rates[names["visionlab"]], rates[names["PIL + v1"]]), 2)
            if not summary:
                summary = {
                    "file_images_per_s": round(statistics.median(rates[names["visionlab"]])),
                    "pil_images_per_s": round(statistics.median(rates[names["PIL + v1"]])),
                    "cached_images_per_s": round(statistics.median(rates[names["cached"]])),
                    "ratio": ratio,
                    "ratio_workers": w,
                }
            else:
                summary[f"ratio_{w}_workers"] = ratio
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--limit", type=int, default=None, help="only the first N Fashion-MNIST training images")
    ap.add_argument("--files", type=int, default=2000, help="MiniPlaces-format JPEGs to generate")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DataLoader workers for the files")
    ap.add_argument("--quick", action="store_true", help="1 round, 2048 + 64 images, 0 workers: checks it runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.limit, args.files, args.workers = 1, args.limit or 2048, min(args.files, 64), [0]
    summary = in_memory(args)
    summary.update(files(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
