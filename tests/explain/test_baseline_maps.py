"""The two model-free "explanations" the sanity and faithfulness checks compare against."""

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from visionlab.errors import ConfigError
from visionlab.explain import edge_map, gaussian_blur, random_map


def test_edge_map_is_the_sobel_magnitude_of_a_hand_computed_step():
    images = torch.zeros(1, 1, 5, 6)
    images[..., 3:] = 1.0  # a vertical step between columns 2 and 3
    maps = edge_map(None, images)
    # Sobel-x over a unit step: the two columns beside it see 1 + 2 + 1 = 4; Sobel-y is zero everywhere.
    expected = torch.zeros(1, 5, 6)
    expected[..., 2:4] = 4.0
    torch.testing.assert_close(maps, expected)


def test_edge_map_takes_the_maximum_over_channels_and_zero_on_a_constant_image():
    images = torch.full((2, 3, 4, 4), 0.7)
    images[0, 1, :, 2:] = 0.2  # a step in the green channel only: strength 4 * 0.5
    maps = edge_map(None, images)
    assert maps.shape == (2, 4, 4)
    torch.testing.assert_close(maps[1], torch.zeros(4, 4), atol=1e-6, rtol=0)  # the conv's sums round
    torch.testing.assert_close(maps[0, :, 1:3], torch.full((4, 2), 2.0))


def test_edge_map_never_calls_the_model():
    class Exploding(nn.Module):
        def forward(self, x):
            raise AssertionError("the edge detector must not call the model")

    images = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(edge_map(Exploding(), images, torch.zeros(2, dtype=torch.long)), edge_map(None, images))


def test_random_map_is_reproducible_for_a_seed_and_differs_between_seeds():
    images = torch.zeros(3, 2, 5, 7, dtype=torch.float64)
    first = random_map(None, images, generator=torch.Generator().manual_seed(1))
    again = random_map(None, images, generator=torch.Generator().manual_seed(1))
    other = random_map(None, images, generator=torch.Generator().manual_seed(2))
    assert first.shape == (3, 5, 7) and first.dtype == torch.float64
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() < 1


def test_gaussian_blur_is_a_normalized_gaussian_with_replicated_borders() -> None:
    images = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    offsets = np.arange(11) - 5
    kernel = np.exp(-(offsets**2) / 50.0)
    kernel /= kernel.sum()
    expected = scipy.ndimage.convolve(images.numpy(), np.outer(kernel, kernel)[None, None], mode="nearest")
    np.testing.assert_allclose(gaussian_blur(images, 5.0, 11).numpy(), expected, rtol=0, atol=1e-12)
    constant = torch.full((1, 1, 5, 5), 0.7, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(constant, 5.0, 11), constant)


def test_gaussian_blur_truncates_at_three_sigma_by_default() -> None:
    images = torch.rand(1, 2, 12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(images, 1.2), gaussian_blur(images, 1.2, 9))  # 2 * ceil(3.6) + 1
    torch.testing.assert_close(gaussian_blur(images, 0.1), gaussian_blur(images, 0.1, 3))  # at least 3 taps


@pytest.mark.parametrize(("sigma", "kernel", "field"), [(0.0, None, "sigma"), (1.0, 4, "kernel"), (1.0, 0, "kernel")])
def test_gaussian_blur_refuses_a_bad_sigma_or_kernel(sigma: float, kernel: int | None, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        gaussian_blur(torch.rand(1, 1, 5, 5), sigma, kernel)
    assert info.value.field == field
