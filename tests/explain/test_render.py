"""Renderings: the course's red overlay by hand, heat maps, grids, PNG and TensorBoard output, differences."""

from __future__ import annotations

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
