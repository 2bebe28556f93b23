"""Training with the augmentation on the device (``gpu_augment``, ``gpu_decode``, ``cache_images`` pinned or
device), run on the CPU device: the same batches as the CPU path, hence the same losses and weights; an exact
resume; and the configurations it refuses, naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.engine import CHECKPOINT, TrainConfig, Trainer, load_checkpoint
from visionlab.errors import ConfigError

from ..conftest import Stop, StopAt
from .builders import read_records, tensors_equal


@pytest.fixture
def tiny_miniplaces(tmp_path: Path) -> str:
    """12 training and 4 validation 20x16 JPEGs in the MiniPlaces layout, 3 classes."""
    root = tmp_path / "mp"
    lines = {"train": [], "val": []}
    for split, n in (("train", 12), ("val", 4)):
        for k in range(n):
            rel = f"{split}/{k:08d}.jpg"
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(100 * (split == "val") + k).integers(0, 256, (16, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / rel, quality=90)
            lines[split].append(f"{rel} {k % 3}")
    for split, entries in lines.items():
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n")
    return f"miniplaces:{root}"


def _config(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=str(out), image_size=16, epochs=3, batch_size=4, lr=0.05, warmup=0.5, workers=0,
                progress=False, tensorboard=False, print_freq=1, seed=7)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_records(run) if r["type"] == "step"]


@pytest.mark.parametrize(
    ("device_input", "workers"),
    [
        ({"gpu_augment": True}, 0),
        ({"gpu_augment": True}, 1),
        ({"gpu_decode": True}, 1),
        ({"cache_images": "device"}, 0),
        ({"cache_images": "pinned", "gpu_augment": True}, 0),
    ],
    ids=["augment", "augment-worker", "decode-worker", "device-cache", "pinned-cache"],
)
def test_a_run_augmented_on_the_device_trains_as_the_cpu_path(
    tiny_miniplaces: str, tmp_path: Path, device_input: dict, workers: int
) -> None:
    """Two epochs on the CPU device: every step's loss and the final weights equal the CPU path's (the cached
    variants against the CPU path with the host cache, which draws as they do without worker processes)."""
    cached = "cache_images" in device_input
    ref = Trainer(_config(tiny_miniplaces, tmp_path / "ref", epochs=2, workers=workers, cache_images=cached),
                  callbacks=[])  # fmt: skip
    ref.fit()
    run = Trainer(_config(tiny_miniplaces, tmp_path / "dev", epochs=2, workers=workers, **device_input), callbacks=[])
    assert type(run.train_loader).__name__ == "DeviceAugmentLoader"
    run.fit()
    assert len(_losses(tmp_path / "ref")) == 6
    assert _losses(tmp_path / "dev") == _losses(tmp_path / "ref")
    assert tensors_equal(ref.model.state_dict(), run.model.state_dict())


@pytest.mark.parametrize("device_input", [{"gpu_augment": True}, {"cache_images": "device"}], ids=["augment", "cache"])
def test_a_killed_run_augmented_on_the_device_resumes_exactly(
    tiny_miniplaces: str, tmp_path: Path, device_input: dict
) -> None:
    """3 steps an epoch: killed at the 2nd step of epoch 2, resumed from epoch 1's checkpoint, it ends with the
    weights, optimizer state and records of the run never stopped."""
    ref = Trainer(_config(tiny_miniplaces, tmp_path / "ref", **device_input), callbacks=[])
    ref.fit()
    with pytest.raises(Stop):
        Trainer(_config(tiny_miniplaces, tmp_path / "run", **device_input), task=StopAt(5), callbacks=[]).fit()
    resumed = Trainer(_config(tiny_miniplaces, tmp_path / "run", **device_input), resume=tmp_path / "run" / CHECKPOINT,
                      callbacks=[])  # fmt: skip
    assert resumed.start_epoch == 1 and resumed.step == 3
    resumed.fit()
    assert tensors_equal(ref.model.state_dict(), resumed.model.state_dict())
    final_ref, final = load_checkpoint(tmp_path / "ref" / CHECKPOINT), load_checkpoint(tmp_path / "run" / CHECKPOINT)
    for a, b in zip(final_ref["optimizer"]["state"].values(), final["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    runs = (tmp_path / "ref", tmp_path / "run")
    epochs = [[r["train_loss"] for r in read_records(run) if r["type"] == "epoch"] for run in runs]
    assert epochs[0] == epochs[1] and len(epochs[0]) == 3


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"data": "fashion-mnist", "gpu_augment": True}, "gpu_augment", "fashion-mnist is held in memory"),
        ({"data": "cifar10:/nowhere", "gpu_decode": True}, "gpu_decode", "cifar10 is held in memory"),
        ({"data": "fashion-mnist", "cache_images": "device"}, "cache_images", "fashion-mnist is held in memory"),
        ({"gpu_augment": True, "augment": "flip"}, "gpu_augment", "cannot honour augment 'flip'"),
        ({"gpu_decode": True, "cache_images": True}, "gpu_decode", "the cache already holds decoded images"),
        ({"cache_images": "disk"}, "cache_images", "must be true, false or one of host, pinned, device"),
    ],
)
def test_what_the_device_cannot_augment_is_refused_naming_the_field(kw: dict, field: str, message: str) -> None:
    cfg = TrainConfig(**{"data": "miniplaces:/nowhere", **kw})
    with pytest.raises(ConfigError, match=message) as caught:
        cfg.validate()
    assert caught.value.field == field


def test_a_non_jpeg_file_is_refused_for_device_decoding_naming_it(tiny_miniplaces: str, tmp_path: Path) -> None:
    root = Path(tiny_miniplaces.split(":", 1)[1])
    (root / "images/train/00000003.jpg").rename(root / "images/train/00000003.png")
    text = (root / "train.txt").read_text().replace("00000003.jpg", "00000003.png")
    (root / "train.txt").write_text(text)
    with pytest.raises(ConfigError, match=r"train.txt:4: .*00000003.png is not a JPEG file") as caught:
        Trainer(_config(tiny_miniplaces, tmp_path / "run", gpu_decode=True), callbacks=[])
    assert caught.value.field == "gpu_decode"


def test_the_cpu_path_is_unchanged_without_the_options(tiny_miniplaces: str, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_miniplaces, tmp_path / "run", epochs=1), callbacks=[])
    assert type(trainer.train_loader).__name__ == "DataLoader"
    trainer.log.close()
