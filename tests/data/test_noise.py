"""ImageNet-C's noise corruptions for training (visionlab.data.noise): the parameters are imagecorruptions' (the
corruption benchmark's), and ``noise_augment`` is the corruptions' definition on the draws its docstring lists,
rounded to 8 bits, on the chosen images only; the same generator state gives the same batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visionlab.data.noise import (
    GAUSSIAN_NOISE_SCALES,
    IMPULSE_NOISE_AMOUNTS,
    SHOT_NOISE_RATES,
    noise_augment,
)
from visionlab.robustness import imagecorruptions_module


def _images(n: int = 30, c: int = 3, side: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, side, side), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_and_shot_parameters_are_imagecorruptions(severity: int) -> None:
    """The library's gaussian_noise and shot_noise from a seeded global state are the definitions with these
    parameters on the same draws, bit for bit."""
    library = imagecorruptions_module().corruption_dict
    image = np.random.default_rng(severity).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = image / 255.0
    np.random.seed(severity)
    gaussian = library["gaussian_noise"](Image.fromarray(image), severity)
    np.random.seed(severity)
    noise = np.random.normal(size=x.shape, scale=GAUSSIAN_NOISE_SCALES[severity - 1])
    np.testing.assert_array_equal(gaussian, np.clip(x + noise, 0, 1) * 255)
    np.random.seed(severity)
    shot = library["shot_noise"](Image.fromarray(image), severity)
    np.random.seed(severity)
    rate = SHOT_NOISE_RATES[severity - 1]
    np.testing.assert_array_equal(shot, np.clip(np.random.poisson(x * rate) / rate, 0, 1) * 255)


def test_impulse_amounts_are_imagecorruptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The share of values imagecorruptions' impulse_noise hands scikit-image, per severity."""
    import skimage.util

    amounts: list[float] = []

    def recorded(image: np.ndarray, mode: str, amount: float, **kwargs: object) -> np.ndarray:
        assert mode == "s&p" and not kwargs  # salt and pepper, half each (scikit-image's default)
        amounts.append(amount)
        return image

    monkeypatch.setattr(skimage.util, "random_noise", recorded)
    image = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    for severity in range(1, 6):
        imagecorruptions_module().corruption_dict["impulse_noise"](image, severity)
    assert tuple(amounts) == IMPULSE_NOISE_AMOUNTS


def _replayed(images: torch.Tensor, probability: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """The chosen images (bool ``(B,)``) and ``noise_augment``'s expected output as float64 pixels in [0, 255]:
    the corruptions' definitions (NumPy, float64) on the draws the docstring lists, in its order."""
    gen = torch.Generator().manual_seed(seed)
    b = images.shape[0]
    chosen = torch.rand(b, generator=gen) < probability
    kinds = torch.randint(0, 3, (b,), generator=gen)
    severities = torch.randint(1, 6, (b,), generator=gen)
    expected = images.numpy().astype(np.float64)
    for kind in range(3):
        index = torch.nonzero(chosen & (kinds == kind)).flatten()
        if not index.numel():
            continue
        x, level = images[index].numpy() / 255.0, (severities[index] - 1).numpy()[:, None, None, None]
        shape = (len(index), *images.shape[1:])
        if kind == 0:
            out = x + np.array(GAUSSIAN_NOISE_SCALES)[level] * torch.randn(shape, generator=gen).double().numpy()
        elif kind == 1:
            rate = np.array(SHOT_NOISE_RATES)[level]
            rates = torch.from_numpy(x).float() * torch.from_numpy(rate).float()
            out = torch.poisson(rates, generator=gen).double().numpy() / rate
        else:
            hit = torch.rand(shape, generator=gen).double().numpy() <= np.array(IMPULSE_NOISE_AMOUNTS)[level]
            salt = torch.rand(shape, generator=gen).numpy() <= 0.5
            out = np.where(hit & salt, 1.0, np.where(hit, 0.0, x))
        expected[index.numpy()] = np.clip(out, 0, 1) * 255
    return chosen, expected


@pytest.mark.parametrize("channels", [1, 3])
def test_noise_augment_is_the_definition_on_its_draws_rounded_to_8_bits(channels: int) -> None:
    images = _images(c=channels)
    out = noise_augment(images, 1.0, torch.Generator().manual_seed(4))
    chosen, expected = _replayed(images, 1.0, 4)
    assert out.dtype == torch.uint8 and out.shape == images.shape and bool(chosen.all())
    assert np.abs(out.numpy() - expected).max() <= 0.5 + 1e-4  # the nearest 8-bit value (float32 arithmetic)
    kinds = torch.randint(0, 3, (30,), generator=_after_rand(4, 30))
    assert set(kinds.tolist()) == {0, 1, 2}  # every corruption occurs in the batch
    assert not torch.equal(out, images)


def _after_rand(seed: int, b: int) -> torch.Generator:
    gen = torch.Generator().manual_seed(seed)
    torch.rand(b, generator=gen)
    return gen


def test_only_the_chosen_images_are_corrupted() -> None:
    images = _images(40)
    out = noise_augment(images, 0.4, torch.Generator().manual_seed(1))
    chosen, expected = _replayed(images, 0.4, 1)
    assert 0 < int(chosen.sum()) < 40
    assert torch.equal(out[~chosen], images[~chosen])
    assert np.abs(out.numpy() - expected).max() <= 0.5 + 1e-4


def test_shot_noise_keeps_black_black_and_impulse_noise_sets_values_to_0_or_255() -> None:
    """Hand cases: Poisson(0) = 0, so shot noise leaves a black image black; impulse noise on a grey image leaves
    only grey, black and white values, some of each."""
    gen = _after_rand(2, 6)
    kinds = torch.randint(0, 3, (6,), generator=gen)
    shot, impulse = kinds == 1, kinds == 2
    assert bool(shot.any()) and bool(impulse.any())
    black = noise_augment(torch.zeros(6, 1, 16, 16, dtype=torch.uint8), 1.0, torch.Generator().manual_seed(2))
    assert int(black[shot].max()) == 0
    grey = noise_augment(torch.full((6, 1, 16, 16), 128, dtype=torch.uint8), 1.0, torch.Generator().manual_seed(2))
    assert set(grey[impulse].unique().tolist()) == {0, 128, 255}


def test_the_same_generator_state_gives_the_same_batch() -> None:
    images = _images()
    gen = torch.Generator().manual_seed(9)
    state = gen.get_state()
    first = noise_augment(images, 0.7, gen)
    second = noise_augment(images, 0.7, gen)
    gen.set_state(state)
    assert torch.equal(noise_augment(images, 0.7, gen), first) and not torch.equal(first, second)
