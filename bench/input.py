"""Input pipeline speed for an in-memory dataset (Fashion-MNIST, 60k training images): the batch path
(:class:`visionlab.data.InMemoryLoader`, one gather + batch flip) vs the per-image DataLoader path the trainer
used before (``transforms.v2`` per image, collation; with 0 and 1 worker processes).

Only the loading is timed (one pass over the training split, batch 128, the images converted to float as the
model receives them); rounds alternate the variants and the ratio is the median of the per-round ratios.

    python bench/input.py [--rounds 5] [--data-root data]

Prints a table, then one JSON line ``{"in_memory_images_per_s": …, "per_image_images_per_s": …, "ratio": …}``
(ratio: in-memory ÷ per-image with 0 workers, the set-up the demo used before).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.data import DataLoader

from visionlab.data import InMemoryLoader, load_dataset


def one_pass(loader) -> float:
    """Images per second of one pass over ``loader``."""
    n, start = 0, time.perf_counter()
    for images, _ in loader:
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--limit", type=int, default=None, help="only the first N training images")
    args = ap.parse_args()
    train = load_dataset("fashion-mnist", data_root=args.data_root).train
    if args.limit:
        train = torch.utils.data.Subset(train, range(args.limit))
    gen = torch.Generator().manual_seed(0)
    variants = {
        "in-memory batches": lambda: InMemoryLoader(train, 128, shuffle=True, drop_last=True, generator=gen),
        "per-image, 0 workers": lambda: DataLoader(train, 128, shuffle=True, drop_last=True, num_workers=0),
        "per-image, 1 worker": lambda: DataLoader(train, 128, shuffle=True, drop_last=True, num_workers=1),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            rates[name].append(one_pass(variants[name]()))
    print(f"{'variant':<22} {'images/s (median)':>18} {'min':>10} {'max':>10}")
    for name, values in rates.items():
        print(f"{name:<22} {statistics.median(values):>18,.0f} {min(values):>10,.0f} {max(values):>10,.0f}")
    fast, slow = rates["in-memory batches"], rates["per-image, 0 workers"]
    ratio = statistics.median(f / s for f, s in zip(fast, slow, strict=True))
    print(json.dumps({"in_memory_images_per_s": round(statistics.median(fast)),
                      "per_image_images_per_s": round(statistics.median(slow)), "ratio": round(ratio, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
