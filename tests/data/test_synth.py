"""The synthetic MiniPlaces (:mod:`visionlab.data.synth`): a tiny set in the real layout that the MiniPlaces reader
and its image checks accept, 128x128 RGB JPEGs, the same bytes for a seed whatever the worker count, classes a
nearest-class-mean classifier finds far above chance and far below perfect, a killed run completed, and the
refusals (bad settings, a folder that is not ours)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from visionlab.data import load_dataset, read_image, synth_batch, synth_miniplaces
from visionlab.data import synth as synth_module
from visionlab.errors import ConfigError

TINY = dict(train=24, val=12, classes=4)  # 4 classes x 6 train images, 3 val images each


def digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, written = synth_miniplaces(tmp_path_factory.mktemp("synth") / "mp", **TINY)
    assert written == 36
    return root


def test_the_tiny_set_is_in_the_real_layout_and_passes_the_reader_and_its_image_checks(tiny: Path) -> None:
    """train.txt sorted by class then number, val.txt by number, categories.txt as the development kit writes
    them; load_dataset (check_images on: every file opened, verified and decoded) reads 24 + 12 images."""
    train = (tiny / "train.txt").read_text().splitlines()
    assert train[:7] == [f"train/s/scene_000/{k:08d}.jpg 0" for k in range(1, 7)] + ["train/s/scene_001/00000001.jpg 1"]
    assert len(train) == 24 and train[-1] == "train/s/scene_003/00000006.jpg 3"
    assert (tiny / "val.txt").read_text().splitlines() == [f"val/{j + 1:08d}.jpg {j % 4}" for j in range(12)]
    assert (tiny / "categories.txt").read_text() == "/s/scene_000 0\n/s/scene_001 1\n/s/scene_002 2\n/s/scene_003 3\n"
    bundle = load_dataset(f"miniplaces:{tiny}", check_images=True)
    assert (bundle.kind, len(bundle.train), len(bundle.val)) == ("miniplaces", 24, 12)
    assert bundle.class_names[:4] == ["scene_000", "scene_001", "scene_002", "scene_003"]
    assert sorted(e.label for e in bundle.train.entries) == [c for c in range(4) for _ in range(6)]
    image, label = bundle.val[5]
    assert image.shape == (3, 128, 128) and label == 1


def test_every_image_is_a_128_pixel_rgb_baseline_jpeg_of_the_rendered_pixels(tiny: Path) -> None:
    """Each file is a JPEG (PIL: format JPEG, mode RGB, 128x128) whose decoded pixels are synth_batch's image of
    that index up to the JPEG error at quality 90 (mean absolute difference 3-4 of 255, mostly the pixel noise
    and the halved chroma), and nearer to it than to any other image of the split."""
    for split, count in (("train", 24), ("val", 12)):
        lines = (tiny / f"{split}.txt").read_text().splitlines()
        rendered, labels = synth_batch(split, range(count), classes=4)
        for k, line in enumerate(lines):
            path = tiny / "images" / line.split()[0]
            with Image.open(path) as img:
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (128, 128))
            index = k if split == "val" else (k % 6) * 4 + k // 6  # train.txt is sorted by class, then number
            assert int(line.split()[1]) == labels[index] == index % 4
            errors = (read_image(path).float() - rendered.float()).abs().mean((1, 2, 3))
            assert errors[index] < 5.0 and int(errors.argmin()) == index, (path, errors)


def test_a_seed_gives_the_same_bytes_for_one_worker_or_two(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """Chunks of 8 images (so two worker processes share the batches of 64 the images are rendered in): the same
    files, byte for byte, as the one-process fixture."""
    monkeypatch.setattr(synth_module, "CHUNK", 8)
    root, written = synth_miniplaces(tmp_path / "j2", **TINY, workers=2)
    assert written == 36
    assert digests(root) == digests(tiny)


def test_chunks_that_cut_across_the_batches_of_64_give_the_same_files(tmp_path: Path, monkeypatch) -> None:
    """70 train images in chunks of 24: the chunk [48, 72) ends in the second batch of 64."""
    settings = dict(train=70, val=5, classes=5)
    whole, _ = synth_miniplaces(tmp_path / "whole", **settings)
    monkeypatch.setattr(synth_module, "CHUNK", 24)
    cut, written = synth_miniplaces(tmp_path / "cut", **settings)
    assert written == 75 and digests(cut) == digests(whole)


def test_another_seed_gives_other_images(tiny: Path, tmp_path: Path) -> None:
    root, _ = synth_miniplaces(tmp_path / "s1", **TINY, seed=1)
    ours, theirs = digests(tiny), digests(root)
    images = [name for name in ours if name.endswith(".jpg")]
    assert len(images) == 36 and all(ours[name] != theirs[name] for name in images)
    assert ours["train.txt"] == theirs["train.txt"]  # labels follow the index, not the seed


def test_a_nearest_class_mean_classifier_is_far_above_chance_and_far_below_perfect() -> None:
    """Learnable but not trivial, on fixed data (deterministic: no training): 6 classes, 30 train images each,
    60 val images; the class means of 16x16 average-pooled pixels classify 30 of 60 (50%; chance 1 in 6)."""
    features = lambda x: torch.nn.functional.avg_pool2d(x.float() / 255, 8).flatten(1)  # noqa: E731
    x, y = synth_batch("train", range(180), classes=6)
    xv, yv = synth_batch("val", range(60), classes=6)
    means = torch.stack([features(x[y == c]).mean(0) for c in range(6)])
    correct = int((torch.cdist(features(xv), means).argmin(1) == yv).sum())
    assert 20 <= correct <= 45  # chance: 10; measured 30


def test_synth_batch_does_not_depend_on_which_images_are_asked_for() -> None:
    """Image 70 alone, among others, or out of order: the same pixels (fixed batches of 64 indices)."""
    alone, _ = synth_batch("train", [70], classes=5)
    many, labels = synth_batch("train", [3, 70, 64, 127], classes=5)
    assert torch.equal(alone[0], many[1]) and labels.tolist() == [3, 0, 4, 2]
    assert not torch.equal(many[0], many[1])


def test_every_image_of_both_splits_is_its_own() -> None:
    """No two of 130 train and 130 val images (three render batches of each) are the same pixels: each image is
    seeded by its split and its index, not by its place in a render batch."""
    train, _ = synth_batch("train", range(130), classes=2)  # 2: images 64 apart share their class
    val, _ = synth_batch("val", range(130), classes=2)
    images = torch.cat([train, val]).flatten(1)
    assert len({hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images}) == 260


def test_a_killed_run_leaves_no_list_and_a_second_run_completes_it(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """The encoder fails at the 20th image: the folder holds its manifest and 19 images but no list, so no reader
    takes it for a dataset; the same command again writes the other 17 and the lists, removes the temporary file
    of a write that was cut short, and leaves the same bytes as a run that was never stopped."""
    encode, calls = synth_module.encode_jpeg, []

    def failing(image: torch.Tensor, quality: int) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return encode(image, quality=quality)

    monkeypatch.setattr(synth_module, "encode_jpeg", failing)
    root = tmp_path / "mp"
    with pytest.raises(KeyboardInterrupt):
        synth_miniplaces(root, **TINY)
    assert not any((root / name).exists() for name in ("train.txt", "val.txt", "categories.txt"))
    assert len(list(root.rglob("*.jpg"))) == 19 and not list(root.rglob("*.tmp"))
    monkeypatch.setattr(synth_module, "encode_jpeg", encode)
    leftover = root / "images/val/.00000002.jpg.4242.tmp"  # what a run killed inside a write leaves
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a JP")
    assert synth_miniplaces(root, **TINY) == (root, 17)
    assert digests(root) == digests(tiny)  # the leftover gone too
    assert synth_miniplaces(root, **TINY) == (root, 0)


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        (dict(train=0), "train", "must be an integer >= 1, got 0"),
        (dict(train=3), "train", "must be >= classes (4): every class needs a training image, got 3"),
        (dict(val=0), "val", "must be an integer >= 1, got 0"),
        (dict(classes=0), "classes", "must be an integer >= 1, got 0"),
        (dict(classes=101, train=200), "classes", "must be at most 100 (MiniPlaces' labels), got 101"),
        (dict(quality=0), "quality", "must be an integer >= 1, got 0"),
        (dict(quality=101), "quality", "must be an integer in [1, 100], got 101"),
        (dict(seed=-1), "seed", "must be an integer >= 0, got -1"),
        (dict(workers=0), "workers", "must be an integer >= 1, got 0"),
        (dict(train=True), "train", "must be an integer >= 1, got True"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    tmp_path: Path, settings: dict, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        synth_miniplaces(tmp_path / "mp", **{**TINY, **settings})
    assert (info.value.field, info.value.message) == (field, message)
    assert not (tmp_path / "mp").exists()


def test_a_folder_that_is_not_ours_is_refused_and_left_as_it_was(tiny: Path, tmp_path: Path) -> None:
    """A non-empty folder without a manifest, a file, and an earlier synth of other settings: refused, untouched."""
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(ConfigError) as info:
        synth_miniplaces(foreign, **TINY)
    assert info.value.field == "root"
    assert info.value.message == (
        f"{foreign} is not empty and holds no synthetic MiniPlaces (synth.json); refusing to write into it (give "
        "an empty or new folder)"
    )
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        synth_miniplaces(foreign / "holiday.jpg", **TINY)
    before = digests(tiny)
    with pytest.raises(ConfigError) as info:
        synth_miniplaces(tiny, **{**TINY, "seed": 3, "quality": 80})
    assert info.value.message == (
        f"{tiny} holds a synthetic MiniPlaces made with other settings (seed 0, not 3; quality 90, not 80); give the "
        "same settings to complete it, or another folder"
    )
    assert digests(tiny) == before
