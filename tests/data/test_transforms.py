"""Transforms: the inscribed rectangle by hand, the recipes' shapes, ranges and determinism, and the eval recipe
against torchvision's functional ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from visionlab.data.transforms import (
    MiniPlacesAugment,
    RandomChannelScale,
    RandomInterpolationResize,
    RandomRotateCrop,
    affine_grids,
    eval_transform,
    inscribed_rect,
    miniplaces_chain,
    split_deterministic,
    to_float_transform,
    train_transform,
)


def random_pil(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode=mode)


# --------------------------------------------------------------------------------------------- inscribed_rect
@pytest.mark.parametrize(
    ("w", "h", "degrees", "expected"),
    [
        (40, 30, 0, (40, 30)),
        (30, 40, 0, (30, 40)),
        (40, 30, 180, (40, 30)),
        (10, 10, 45, (10 / math.sqrt(2), 10 / math.sqrt(2))),
        (10, 10, -45, (10 / math.sqrt(2), 10 / math.sqrt(2))),
        (10, 10, 135, (10 / math.sqrt(2), 10 / math.sqrt(2))),
        # square at 30 deg: all four corners touch, side = s / (cos a + sin a) = 20 / (sqrt(3) + 1)
        (10, 10, 30, (20 / (math.sqrt(3) + 1), 20 / (math.sqrt(3) + 1))),
        # long thin 100x10 at 30 deg (half-constrained): height 10 spans 5/sin, 5/cos of the crop
        (100, 10, 30, (5 / 0.5, 5 / math.cos(math.radians(30)))),
        (10, 100, 30, (5 / math.cos(math.radians(30)), 5 / 0.5)),
        (0, 10, 10, (0, 0)),
        (0, 10, 0, (0, 0)),  # degenerate at 0 degrees too (no division by sin 0)
        (10, 0, 0, (0, 0)),
    ],
)
def test_inscribed_rect_by_hand(w: float, h: float, degrees: float, expected: tuple[float, float]) -> None:
    assert inscribed_rect(w, h, math.radians(degrees)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("w", "h", "degrees"), [(144, 192, 15), (192, 144, -10), (180, 144, 7.3), (100, 10, 30)])
def test_inscribed_rect_fits_and_touches(w: float, h: float, degrees: float) -> None:
    """Every corner of the crop, expressed in the rotated image's own frame, lies inside the image, and at least
    one touches its border (so the crop is not needlessly small)."""
    a = math.radians(degrees)
    cw, ch = inscribed_rect(w, h, a)
    assert cw > 0 and ch > 0
    worst = 0.0
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * cw / 2, sy * ch / 2
            u, v = x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)
            worst = max(worst, abs(u) / (w / 2), abs(v) / (h / 2))
    assert worst == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("angle", [15.0, -15.0, 7.3])
def test_rotate_crop_has_no_padding(angle: float) -> None:
    white = tv_tensors.Image(torch.full((3, 80, 100), 255, dtype=torch.uint8))
    out = RandomRotateCrop(15.0).transform(white, {"angle": angle})
    cw, ch = inscribed_rect(100, 80, math.radians(angle))
    assert out.shape == (3, int(ch), int(cw))
    assert int(out.min()) > 127  # no pixel is mostly black fill (only bilinear blending at the very edge)


# --------------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("size", [(200, 150), (150, 200), (20, 16)])
def test_miniplaces_train_recipe_shape_range_and_seeding(size: tuple[int, int]) -> None:
    image = random_pil(*size)
    train = train_transform("miniplaces", 128)
    torch.manual_seed(5)
    a = train(image)
    assert a.dtype == torch.float32 and a.shape == (3, 128, 128)
    assert a.min() >= 0.0 and a.max() <= 1.0
    torch.manual_seed(5)
    assert torch.equal(a, train(image))
    torch.manual_seed(6)
    assert not torch.equal(a, train(image))


def _smooth(h: int, w: int) -> torch.Tensor:
    """A smooth uint8 image (interpolation kernels then differ by a level or two at most)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.sin(6 * x) * 0.5 + 0.5, torch.cos(5 * y) * 0.5 + 0.5, x * y]).mul(255).round().byte()


@pytest.mark.parametrize(("h", "w"), [(100, 150), (150, 100), (128, 128), (61, 200)])
def test_fused_augmentation_draws_what_the_chain_draws_and_lands_on_its_pixels(h: int, w: int) -> None:
    image, chain, fused = _smooth(h, w), miniplaces_chain(128), MiniPlacesAugment(128)
    for seed in range(6):
        torch.manual_seed(seed)
        expected, after_chain = chain(image), torch.get_rng_state()
        torch.manual_seed(seed)
        got = fused(image)
        assert torch.equal(torch.get_rng_state(), after_chain)  # the same numbers drawn, in the same order
        assert got.shape == (3, 128, 128) and got.dtype == torch.float32 and got.min() >= 0 and got.max() <= 1
        assert (got - expected).abs().mean() < 0.004  # same geometry: one resampling vs three (and uint8 steps)
        assert (got - expected).abs().quantile(0.99) < 0.03


def test_fused_augmentation_without_randomness_is_a_plain_resize() -> None:
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    fused = MiniPlacesAugment(32, degrees=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0), colour=0.0)
    fused.resize.modes = (v2.InterpolationMode.BILINEAR,)
    torch.manual_seed(0)
    while True:  # a draw without the flip
        params = fused.make_params([image])
        if not params["flip"]:
            break
    assert params["box"] == dict(top=0, left=0, height=36, width=36)  # 32 * 9/8 = 36, all of it
    out = fused.transform(image, params)
    expected = F.interpolate(image[None].float() / 255, size=(32, 32), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    flipped = fused.transform(image, {**params, "flip": True})
    torch.testing.assert_close(flipped, expected.flip(-1), atol=1e-5, rtol=0)


def test_miniplaces_train_recipe_other_size_and_grayscale_input() -> None:
    torch.manual_seed(0)
    assert train_transform("miniplaces", 64)(random_pil(90, 70)).shape == (3, 64, 64)
    assert train_transform("miniplaces", 128)(random_pil(90, 70, mode="L")).shape == (3, 128, 128)


@pytest.mark.parametrize(
    ("size", "image_size"), [((200, 150), 128), ((150, 200), 128), ((20, 16), 128), ((90, 70), 64)]
)
def test_eval_recipe_is_resize_then_center_crop(size: tuple[int, int], image_size: int) -> None:
    image = random_pil(*size)
    resized = TF.resize(TF.pil_to_tensor(image), [image_size * 9 // 8], antialias=True)  # shorter side -> 144
    assert min(resized.shape[-2:]) == image_size * 9 // 8
    expected = TF.center_crop(resized, [image_size, image_size]).float() / 255
    out = eval_transform("miniplaces", image_size)(image)
    assert out.dtype == torch.float32 and out.shape == (3, image_size, image_size)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(out, eval_transform("miniplaces", image_size)(image))


def test_eval_recipe_channels() -> None:
    assert eval_transform("miniplaces", 128)(random_pil(30, 20, mode="L")).shape == (3, 128, 128)
    gray = eval_transform("small", 28, in_channels=1)(random_pil(50, 40))
    assert gray.shape == (1, 28, 28) and gray.dtype == torch.float32
    same = torch.arange(28 * 28, dtype=torch.uint8).reshape(1, 28, 28)
    out = eval_transform("flip", 28, in_channels=1)(same)  # already 28x28: pixels pass through
    torch.testing.assert_close(out.as_subclass(torch.Tensor), same.float() / 255, atol=1e-7, rtol=0)


def test_small_recipe_is_a_padded_shift_and_maybe_a_flip() -> None:
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))  # 32 // 14 = 2 pixels of zero padding
    for seed in range(6):
        torch.manual_seed(seed)
        out = train_transform("small", 32)(x)
        assert out.dtype == torch.float32 and out.shape == (3, 32, 32)
        pixels = (out * 255).round().to(torch.uint8)
        candidates = [
            crop.flip(-1) if flip else crop
            for dy in range(5)
            for dx in range(5)
            for crop in [padded[:, dy : dy + 32, dx : dx + 32]]
            for flip in (False, True)
        ]
        assert any(torch.equal(pixels, c) for c in candidates)


def test_flip_recipe_and_to_float() -> None:
    x = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out = (train_transform("flip", 28)(x) * 255).round().to(torch.uint8)
        assert torch.equal(out, x) or torch.equal(out, x.flip(-1))
        seen.add(torch.equal(out, x))
    assert seen == {True, False}
    torch.testing.assert_close(to_float_transform()(x), x.float() / 255, atol=1e-7, rtol=0)


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="unknown transform recipe 'huge'"):
        train_transform("huge", 32)
    with pytest.raises(ValueError, match="unknown transform recipe 'huge'"):
        eval_transform("huge", 32)


# --------------------------------------------------------------------------------------------- channel scale
def test_channel_scale_factor_per_channel_within_15_percent() -> None:
    x = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(0)) * 0.8  # no clamping below 0.8 * 1.15
    before = x.clone()
    torch.manual_seed(0)
    y = RandomChannelScale(0.15)(x)
    assert torch.equal(x, before)  # input untouched
    factors = y / x
    for c in range(3):
        torch.testing.assert_close(factors[c], factors[c, 0, 0].expand(6, 5))  # one factor per channel
    per_channel = factors[:, 0, 0]
    assert ((per_channel >= 0.85) & (per_channel <= 1.15)).all()
    assert len(set(per_channel.tolist())) == 3


def test_channel_scale_keeps_range() -> None:
    x = torch.tensor([0.0, 0.5, 0.95, 1.0]).repeat(3, 4, 1)
    for seed in range(10):
        torch.manual_seed(seed)
        y = RandomChannelScale(0.15)(x)
        assert y.min() >= 0.0 and y.max() <= 1.0 and (y[..., 0] == 0).all()


def test_channel_scale_rejects_uint8() -> None:
    with pytest.raises(TypeError, match="float pixels"):
        RandomChannelScale(0.15)(torch.zeros(3, 2, 2, dtype=torch.uint8))


# --------------------------------------------------------------------------------------------- split_deterministic
def test_split_deterministic_heads_of_the_recipes() -> None:
    prepare, rest = split_deterministic(eval_transform("miniplaces", 64))
    assert [type(t).__name__ for t in prepare.transforms] == ["ToImage", "RGB", "Resize", "CenterCrop"]
    assert [type(t).__name__ for t in rest.transforms] == ["ToDtype"]  # the cache stays uint8
    prepare, rest = split_deterministic(train_transform("miniplaces", 64))
    assert [type(t).__name__ for t in prepare.transforms] == ["ToImage", "RGB"]  # the resize draws its kernel
    assert [type(t).__name__ for t in rest.transforms] == ["MiniPlacesAugment"]
    prepare, rest = split_deterministic(v2.Compose([v2.ToImage(), v2.Resize(8)]))
    assert isinstance(rest, v2.Identity) and len(prepare.transforms) == 2
    fn = lambda image: image  # noqa: E731
    prepare, rest = split_deterministic(fn)
    assert isinstance(prepare, v2.Identity) and rest is fn


@pytest.mark.parametrize("recipe", ["train", "eval"])
def test_split_deterministic_composes_back_with_the_same_draws(recipe: str) -> None:
    image = torch.from_numpy(np.array(random_pil(40, 30, seed=4))).permute(2, 0, 1)
    transform = train_transform("miniplaces", 32) if recipe == "train" else eval_transform("miniplaces", 32)
    prepare, rest = split_deterministic(transform)
    for seed in range(3):
        torch.manual_seed(seed)
        whole = transform(image)
        torch.manual_seed(seed)
        assert torch.equal(rest(prepare(image)), whole)


# --------------------------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("mode", [v2.InterpolationMode.BILINEAR, v2.InterpolationMode.BICUBIC])
def test_interpolation_resize_is_torchvisions_antialiased_resize_with_the_drawn_kernel(
    mode: v2.InterpolationMode,
) -> None:
    """Shrinking 32 -> 8: the drawn kernel is used, with antialiasing (which only shows when shrinking)."""
    x = torch.randint(0, 256, (3, 32, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    out = RandomInterpolationResize(8, modes=(mode,))(x)
    assert out.shape == (3, 8, 10)
    assert torch.equal(out, TF.resize(x, [8], interpolation=mode, antialias=True))


@pytest.mark.parametrize("angle", [0.0, 10.0])
def test_rotate_crop_is_a_bilinear_rotation_then_the_inscribed_centre_crop(angle: float) -> None:
    x = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    out = RandomRotateCrop(15.0).transform(x, {"angle": angle})
    cw, ch = inscribed_rect(40, 30, math.radians(angle))
    rotated = TF.rotate(x, angle, interpolation=v2.InterpolationMode.BILINEAR)
    assert torch.equal(out, TF.center_crop(rotated, [int(ch), int(cw)]))


@pytest.mark.parametrize("shape", [(3, 1, 5), (3, 5, 1)])
def test_rotate_crop_of_a_one_pixel_thin_image_keeps_its_one_pixel(shape: tuple[int, int, int]) -> None:
    x = torch.arange(15, dtype=torch.uint8).reshape(shape)
    assert torch.equal(RandomRotateCrop(15.0).transform(x, {"angle": 0.0}), x)


def test_channel_scale_rejects_uint8_with_the_whole_message() -> None:
    message = r"^RandomChannelScale expects float pixels in \[0, 1\]; put it after ToDtype$"
    with pytest.raises(TypeError, match=message):
        RandomChannelScale(0.15)(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_channel_scale_clamps_below_zero_and_keeps_the_dtype() -> None:
    x = torch.tensor([-0.5, 0.0, 2.0]).repeat(3, 1, 1)
    torch.manual_seed(0)
    y = RandomChannelScale(0.15)(x)
    assert y.tolist() == [[[0.0, 0.0, 1.0]]] * 3
    half = torch.full((3, 2, 2), 0.5, dtype=torch.bfloat16)
    assert RandomChannelScale(0.15)(half).dtype == torch.bfloat16


def test_fused_augmentation_resizes_the_shorter_side_to_the_truncated_nine_eighths() -> None:
    """20 * 9 // 8 = 22 (not 22.5); the longer side is truncated as torchvision truncates it."""
    torch.manual_seed(0)
    params = MiniPlacesAugment(20).make_params([torch.zeros(3, 30, 41, dtype=torch.uint8)])
    assert params["resized"] == (22, 30) and all(type(v) is int for v in params["resized"])
    params = MiniPlacesAugment(20).make_params([torch.zeros(3, 41, 30, dtype=torch.uint8)])
    assert params["resized"] == (30, 22) and all(type(v) is int for v in params["resized"])


def test_fused_augmentation_keeps_at_least_a_one_pixel_inscribed_rectangle() -> None:
    """Size 1: the image is resized to 1x1 (1 * 9 // 8), its inscribed rectangle is 1x1, and the crop is all of it."""
    fused = MiniPlacesAugment(1, degrees=0.0)
    torch.manual_seed(0)
    params = fused.make_params([torch.zeros(3, 2, 2, dtype=torch.uint8)])
    assert params["resized"] == (1, 1) and params["inscribed"] == (1, 1)
    assert params["box"] == dict(top=0, left=0, height=1, width=1)


def test_reference_chain_is_the_recipe_it_documents() -> None:
    steps = miniplaces_chain(64).transforms
    assert [type(t).__name__ for t in steps] == [
        "ToImage", "RGB", "RandomInterpolationResize", "RandomHorizontalFlip", "RandomRotateCrop",
        "RandomResizedCrop", "ToDtype", "RandomChannelScale",
    ]  # fmt: skip
    assert steps[2].size == 72 and steps[4].degrees == 15.0 and steps[7].amount == 0.15
    crop = steps[5]
    assert (crop.size, crop.scale, crop.ratio, crop.antialias) == ((64, 64), (0.25, 1.0), (0.8, 1.2), True)


def _whole_image_params(n: int, angle: float, mode: v2.InterpolationMode) -> dict:
    """Draws for an ``n x n`` image kept at ``n x n``: no flip, no crop, no colour change, only ``angle``."""
    box, scale = dict(top=0, left=0, height=n, width=n), torch.ones(3, 1, 1)
    return dict(mode=mode, flip=False, angle=angle, resized=(n, n), inscribed=(n, n), box=box, scale=scale)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_fused_quarter_turn_lands_exactly_on_the_rotated_pixels(dtype: torch.dtype) -> None:
    """90 degrees about the centre of a square: every output pixel centre is a source pixel centre, so bilinear
    sampling returns the pixels of ``rot90`` (counter-clockwise, as ``TF.rotate``). A float input is already in
    [0, 1] and is not divided by 255 again."""
    x = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    expected = torch.rot90(x.float() / 255, 1, dims=(-2, -1))
    image = x if dtype == torch.uint8 else x.float() / 255
    out = MiniPlacesAugment(8).transform(image, _whole_image_params(8, 90.0, v2.InterpolationMode.BILINEAR))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_fused_bicubic_draw_samples_bicubically() -> None:
    """At 10 degrees the sampling positions fall between pixels: the drawn kernel (bicubic) shows, with zero
    padding and pixel-centre alignment."""
    x = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    fused = MiniPlacesAugment(8)
    params = _whole_image_params(8, 10.0, v2.InterpolationMode.BICUBIC)
    out = fused.transform(x, params)
    grid = affine_grids(torch.tensor(fused.source_map(params), dtype=torch.float32).view(1, 2, 3), 8)
    expected = F.grid_sample(x[None].float() / 255, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(out, expected[0].clamp(0, 1), atol=1e-6, rtol=0)
    bilinear = F.grid_sample(x[None].float() / 255, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert (out - bilinear[0].clamp(0, 1)).abs().max() > 0.01


def test_fused_draw_records_the_drawn_interpolation() -> None:
    fused = MiniPlacesAugment(16)
    fused.resize.modes = (v2.InterpolationMode.BICUBIC,)
    assert fused.make_params([torch.zeros(3, 20, 20, dtype=torch.uint8)])["mode"] == v2.InterpolationMode.BICUBIC


@pytest.mark.parametrize(("image_size", "pad"), [(14, 1), (28, 2)])
def test_small_recipe_pads_one_fourteenth_and_reaches_every_shift(image_size: int, pad: int) -> None:
    """``max(1, size // 14)`` pixels of zero padding: 1 at 14, 2 at 28 (28 // 15 would be 1); over 150 draws every
    one of the ``(2 pad + 1)**2`` shifts, flipped and not, turns up, and nothing else."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randint(1, 256, (3, image_size, image_size), dtype=torch.uint8, generator=gen)
    padded = F.pad(x, (pad, pad, pad, pad))
    side = 2 * pad + 1
    candidates = {
        (dy, dx, flip): crop.flip(-1) if flip else crop
        for dy in range(side)
        for dx in range(side)
        for crop in [padded[:, dy : dy + image_size, dx : dx + image_size]]
        for flip in (False, True)
    }
    train = train_transform("small", image_size)
    torch.manual_seed(0)
    seen = set()
    for _ in range(150):
        pixels = (train(x) * 255).round().to(torch.uint8)
        (found,) = [key for key, c in candidates.items() if torch.equal(pixels, c)]
        seen.add(found)
    assert seen == set(candidates)


def test_miniplaces_train_recipe_settings() -> None:
    steps = train_transform("miniplaces", 64).transforms
    assert [type(t).__name__ for t in steps] == ["ToImage", "RGB", "MiniPlacesAugment"]
    fused = steps[2]
    assert (fused.size, fused.degrees, fused.colour) == (64, 15.0, 0.15)
    assert (fused.crop.size, fused.crop.scale, fused.crop.ratio) == ((64, 64), (0.25, 1.0), (0.8, 1.2))


@pytest.mark.parametrize("recipe", ["small", "flip"])
def test_small_eval_recipe_shrinks_with_antialiasing(recipe: str) -> None:
    x = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    out = eval_transform(recipe, 10)(x)
    expected = TF.resize(x, [10, 10], antialias=True).float() / 255
    torch.testing.assert_close(out.as_subclass(torch.Tensor), expected, atol=1e-6, rtol=0)


def test_split_deterministic_stops_at_the_first_random_or_float_step() -> None:
    prepare, rest = split_deterministic(to_float_transform())
    assert [type(t).__name__ for t in prepare.transforms] == ["ToImage"]
    assert [type(t).__name__ for t in rest.transforms] == ["ToDtype"]
    to_float = v2.ToDtype(torch.float32, scale=True)
    transform = v2.Compose([v2.ToImage(), v2.RGB(), v2.Resize(8), to_float, v2.CenterCrop(4)])
    prepare, rest = split_deterministic(transform)
    assert [type(t).__name__ for t in prepare.transforms] == ["ToImage", "RGB", "Resize"]
    assert [type(t).__name__ for t in rest.transforms] == ["ToDtype", "CenterCrop"]
