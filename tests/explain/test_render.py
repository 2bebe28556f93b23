"""Renderings: the course's red overlay by hand, heat maps, grids, PNG and TensorBoard output, differences."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from visionlab.errors import ConfigError
from visionlab.explain import (
    TAG_ADVERSARIAL,
    TAG_ORIGINAL,
    TAG_SALIENCY,
    add_to_tensorboard,
    amplified_difference,
    heatmap_overlay,
    image_grid,
    red_overlay,
    save_grid,
)

GRAY = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])  # (1, 1, 2, 2)
MAP = torch.tensor([[[0.0, 1.0], [5.0, 2.0]]])  # mean 2


def test_original_tags() -> None:
    assert (TAG_SALIENCY, TAG_ORIGINAL, TAG_ADVERSARIAL) == ("Image/Image_Atten", "Image/Org_Image", "Image/Adv_Image")


def test_red_overlay_by_hand() -> None:
    out = red_overlay(GRAY, MAP)  # threshold 2.0 x mean 2 = 4: only the 5 is marked
    assert out.shape == (1, 3, 2, 2)
    assert torch.equal(out[0, 0], torch.tensor([[0.2, 0.4], [1.0, 0.8]]))
    assert torch.equal(out[0, 1], GRAY[0, 0]) and torch.equal(out[0, 2], GRAY[0, 0])
    out = red_overlay(GRAY, MAP, threshold=1.0)  # > 2: only the 5 again (2 is not strictly above)
    assert torch.equal(out[0, 0], torch.tensor([[0.2, 0.4], [1.0, 0.8]]))
    out = red_overlay(GRAY, MAP, threshold=0.4)  # > 0.8: 1, 5 and 2
    assert torch.equal(out[0, 0], torch.tensor([[0.2, 1.0], [1.0, 1.0]]))
    assert torch.equal(GRAY, torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]]))  # input untouched


def test_red_overlay_thresholds_each_image_by_its_own_mean_and_keeps_rgb() -> None:
    rgb = torch.rand(2, 3, 2, 2)
    maps = torch.stack([MAP[0], 100 * MAP[0] + 1000])  # second: (1000, 1100, 1500, 1200), mean 1200: none > 2400
    out = red_overlay(rgb, maps)
    assert torch.equal(out[:, 1:], rgb[:, 1:])
    assert torch.equal(out[0, 0], torch.where(MAP[0] > 4, 1.0, rgb[0, 0]))
    assert torch.equal(out[1, 0], rgb[1, 0])
    assert torch.equal(red_overlay(rgb, torch.zeros(2, 2, 2)), rgb)  # an all-zero map marks nothing


def test_heatmap_overlay_colours_and_blends() -> None:
    lut = matplotlib.colormaps["inferno"]
    colour = heatmap_overlay(GRAY, MAP, alpha=1.0)
    low, high = torch.tensor(lut(0.0)[:3]), torch.tensor(lut(1.0)[:3])
    torch.testing.assert_close(colour[0, :, 0, 0], low.float())  # the map's minimum
    torch.testing.assert_close(colour[0, :, 1, 0], high.float())  # its maximum
    torch.testing.assert_close(heatmap_overlay(GRAY, MAP, alpha=0.0), GRAY.expand(1, 3, 2, 2))
    blend = heatmap_overlay(GRAY, MAP, alpha=0.25, cmap="gray")
    torch.testing.assert_close(blend[0, :, 1, 0], torch.full((3,), 0.75 * 0.6 + 0.25 * 1.0))
    mixed = heatmap_overlay(torch.rand(3, 3, 4, 4), torch.randn(3, 4, 4) * 50)
    assert mixed.shape == (3, 3, 4, 4) and mixed.min() >= 0.0 and mixed.max() <= 1.0
    flat = heatmap_overlay(GRAY, torch.full((1, 2, 2), 3.0), alpha=1.0)  # constant map: lowest colour
    torch.testing.assert_close(flat[0], low.float().view(3, 1, 1).expand(3, 2, 2))


def test_grid_shape_for_23_images_at_10_per_row() -> None:
    grid = image_grid(torch.rand(23, 1, 5, 5), nrow=10)
    assert grid.shape == (3, 3 * (5 + 2) + 2, 10 * (5 + 2) + 2)  # 3 rows, grayscale made RGB


def test_save_grid_writes_a_decodable_png(tmp_path: Path) -> None:
    path = save_grid(torch.ones(23, 3, 5, 5), tmp_path / "figs" / "saliency.png")
    assert path == tmp_path / "figs" / "saliency.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (72, 23)
        pixels = np.asarray(png.convert("RGB"))
    assert (pixels[2, 2] == 255).all() and (pixels[0, 0] == 0).all()  # an image pixel; the padding


def test_tensorboard_image_under_the_saliency_tag(tmp_path: Path) -> None:
    writer = SummaryWriter(log_dir=str(tmp_path))
    add_to_tensorboard(writer, TAG_SALIENCY, image_grid(torch.rand(12, 3, 4, 4)), step=3)
    add_to_tensorboard(writer, TAG_ORIGINAL, torch.rand(12, 1, 4, 4))  # a batch is gridded 10 per row
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["images"]) == {TAG_SALIENCY, TAG_ORIGINAL}
    (image,) = events.Images(TAG_SALIENCY)
    assert (image.step, image.width, image.height) == (3, 10 * 6 + 2, 2 * 6 + 2)
    assert events.Images(TAG_ORIGINAL)[0].width == 62


def test_amplified_difference() -> None:
    orig = torch.rand(2, 3, 4, 4)
    assert torch.equal(amplified_difference(orig, orig), torch.full_like(orig, 0.5))
    orig = torch.full((2, 3, 4, 4), 0.5)
    adv = orig.clone()
    adv[0, 0, 0, 0] += 0.125
    adv[1, 2, 3, 3] -= 0.0625
    changed = adv != orig
    out = amplified_difference(orig, adv)  # the largest |difference| (0.125) maps to +0.5: gain 4
    assert out[0, 0, 0, 0].item() == 1.0 and out[1, 2, 3, 3].item() == 0.25
    assert (out[~changed] == 0.5).all()
    out = amplified_difference(orig, adv, gain=6.0)  # 0.5 + 0.75 clamps to 1; 0.5 - 0.375
    assert out[0, 0, 0, 0].item() == 1.0 and out[1, 2, 3, 3].item() == 0.125


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: red_overlay(GRAY, MAP, threshold=-1.0), ConfigError, "threshold: must be a finite number >= 0"),
        (lambda: red_overlay(GRAY, MAP[:, :1]), ValueError, r"expected maps \(1, 2, 2\)"),
        (lambda: red_overlay(GRAY[0], MAP), ValueError, r"expected images \(N, C, H, W\) with C 1 or 3"),
        (lambda: heatmap_overlay(GRAY, MAP, alpha=1.5), ConfigError, r"alpha: must be in \[0, 1\], got 1.5"),
        (lambda: heatmap_overlay(GRAY, MAP, cmap="nope"), ConfigError, "cmap: unknown matplotlib colormap 'nope'"),
        (lambda: image_grid(torch.rand(2, 2, 4, 4)), ValueError, "with C 1 or 3"),
        (lambda: amplified_difference(GRAY, GRAY[:, :, :1]), ValueError, "shapes differ"),
        (lambda: amplified_difference(GRAY, GRAY, gain=0.0), ConfigError, "gain: must be a finite number > 0"),
    ],
)
def test_bad_arguments_are_refused(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_red_overlay_threshold_zero_marks_every_positive_pixel_and_clamps() -> None:
    out = red_overlay(GRAY, MAP, threshold=0.0)  # > 0: 1, 5 and 2 (the 0 is not strictly above)
    assert torch.equal(out[0, 0], torch.tensor([[0.2, 1.0], [1.0, 1.0]]))
    # A grayscale batch of two (repeated to RGB per image), pixels outside [0, 1] clamped; nothing marked.
    images = torch.tensor([[[[-0.5, 1.5]]], [[[0.25, 2.0]]]])  # (2, 1, 1, 2)
    out = red_overlay(images, torch.zeros(2, 1, 2))
    expected = torch.tensor([[[[0.0, 1.0]]], [[[0.25, 1.0]]]]).expand(2, 3, 1, 2)
    assert torch.equal(out, expected)


def test_heatmap_overlay_normalises_each_map_by_its_own_range() -> None:
    # Image 0 spans 0..2, image 1 spans 10..11 (a span of exactly 1): both normalise to (0, 0.5, 1).
    maps = torch.tensor([[[0.0, 1.0, 2.0]], [[10.0, 10.5, 11.0]]])  # (2, 1, 3)
    out = heatmap_overlay(torch.zeros(2, 1, 1, 3), maps, alpha=1.0, cmap="gray")
    gray = matplotlib.colormaps["gray"]
    levels = torch.tensor([gray(0)[0], gray(128)[0], gray(255)[0]], dtype=torch.float32)  # 0.5 * 255 rounds to 128
    assert torch.equal(out, levels.view(1, 1, 1, 3).expand(2, 3, 1, 3))


def test_heatmap_overlay_samples_the_colormap_at_256_levels() -> None:
    inferno = matplotlib.colormaps["inferno"]
    maps = torch.tensor([[[0.0, 200.0, 255.0]]])  # unit values 0, 200/255, 1: levels 0, 200, 255
    out = heatmap_overlay(torch.zeros(1, 3, 1, 3), maps, alpha=1.0)
    expected = torch.tensor([inferno(k)[:3] for k in (0, 200, 255)], dtype=torch.float32)  # (3 pixels, RGB)
    assert torch.equal(out[0, :, 0].T, expected)
    assert out.dtype == torch.float32


def test_heatmap_overlay_clamps_images_outside_the_pixel_range() -> None:
    images = torch.tensor([[[[-0.5, 1.5]]]])
    out = heatmap_overlay(images, torch.tensor([[[0.0, 1.0]]]), alpha=0.0)
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0]]]]).expand(1, 3, 1, 2))


def test_grid_padding_is_passed_on() -> None:
    images = torch.ones(3, 3, 2, 2)
    grid = image_grid(images, nrow=3, padding=1)
    assert grid.shape == (3, 1 + 2 + 1, 3 * (2 + 1) + 1)
    assert torch.equal(grid[:, 1, 1:9], torch.tensor([1.0, 1, 0, 1, 1, 0, 1, 1]).expand(3, 8))
    assert torch.equal(grid[:, 0], torch.zeros(3, 10))  # the top padding row
    assert image_grid(images).shape == (3, 2 + 2 + 2, 3 * (2 + 2) + 2)  # default padding 2, 10 per row


def test_save_grid_writes_a_ready_grid_as_is_into_new_folders(tmp_path: Path) -> None:
    grid = torch.tensor([[[0.0, 1.0], [51 / 255, 204 / 255]]]).expand(3, 2, 2)  # one (3, H, W) grid
    path = tmp_path / "a" / "b" / "grid.png"
    assert save_grid(grid, path) == path
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (2, 2)
        pixels = np.asarray(png.convert("RGB"))
    assert pixels[..., 0].tolist() == [[0, 255], [51, 204]] and (pixels == pixels[..., :1]).all()
    other = save_grid(torch.zeros(2, 1, 2, 2), tmp_path / "a" / "b" / "second.grid")  # same folder; any suffix
    with Image.open(other) as png:
        assert png.format == "PNG" and png.size == (2 * 4 + 2, 2 + 4)  # two images, padding 2, 10 per row


def test_tensorboard_pixels_default_step_and_clamp(tmp_path: Path) -> None:
    writer = SummaryWriter(log_dir=str(tmp_path))
    grid = torch.tensor([[[-0.5, 0.0, 0.2, 1.0, 1.5]]]).expand(3, 1, 5)  # 0.2 * 255 = 51
    add_to_tensorboard(writer, TAG_ADVERSARIAL, grid)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (image,) = events.Images(TAG_ADVERSARIAL)
    assert image.step == 0
    with Image.open(io.BytesIO(image.encoded_image_string)) as png:
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape == (1, 5, 3) and pixels[0, :, 0].tolist() == [0, 0, 51, 255, 255]
    assert (pixels == pixels[..., :1]).all()


def test_tensorboard_refuses_a_two_dimensional_grid() -> None:
    with pytest.raises(
        ValueError, match=r"^add_to_tensorboard: expected a \(C, H, W\) grid or \(N, C, H, W\) batch, got \(4, 4\)$"
    ):
        add_to_tensorboard(None, TAG_SALIENCY, torch.zeros(4, 4))  # type: ignore[arg-type]


def test_amplified_difference_empty_small_gain_and_lower_clamp() -> None:
    empty = torch.zeros(0, 3, 2, 2)
    assert amplified_difference(empty, empty).shape == (0, 3, 2, 2)
    orig = torch.full((1, 1, 1, 2), 0.5)
    adv = orig + torch.tensor([0.25, -0.125])
    assert amplified_difference(orig, adv, gain=0.5).flatten().tolist() == [0.625, 0.4375]
    assert amplified_difference(orig, adv, gain=8.0).flatten().tolist() == [1.0, 0.0]  # 2.5 and -0.5 clamped


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: red_overlay(GRAY, MAP, threshold=float("inf")),
            ConfigError,
            "threshold: must be a finite number >= 0, got inf",
        ),
        (
            lambda: red_overlay(GRAY, MAP[:, :1]),
            ValueError,
            r"expected maps \(1, 2, 2\) for images \(1, 1, 2, 2\), got \(1, 1, 2\)",
        ),
        (
            lambda: image_grid(torch.rand(2, 2, 4, 4)),
            ValueError,
            r"expected images \(N, C, H, W\) with C 1 or 3, got \(2, 2, 4, 4\)",
        ),
        (
            lambda: amplified_difference(GRAY, GRAY[:, :, :1]),
            ValueError,
            r"amplified_difference: shapes differ, \(1, 1, 2, 2\) vs \(1, 1, 1, 2\)",
        ),
        (
            lambda: amplified_difference(GRAY, GRAY, gain=float("nan")),
            ConfigError,
            "gain: must be a finite number > 0 or None, got nan",
        ),
    ],
)
def test_whole_error_messages(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        call()
