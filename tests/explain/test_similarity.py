"""Spearman rank correlation and SSIM of explanation maps, batched, against scipy and skimage (the oracles)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from visionlab.errors import ConfigError
from visionlab.explain.similarity import minmax_normalize, rank_average, spearman, ssim


def pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random maps, maps with many ties (as an edge detector on a flat background gives), and a mix."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, 12, 10, generator=g), torch.rand(6, 12, 10, generator=g)
    tied_a, tied_b = (a * 4).floor(), (b * 3).floor()
    tied_a[0, :6] = 0.0  # half of one map a single tie
    return {"random": (a, b), "tied": (tied_a, tied_b), "tied vs random": (tied_a, b)}


@pytest.mark.parametrize("case", ["random", "tied", "tied vs random"])
def test_spearman_equals_scipy_per_image_with_average_ranks_for_ties(case: str) -> None:
    a, b = pairs()[case]
    expected = [scipy.stats.spearmanr(x.flatten().numpy(), y.flatten().numpy())[0] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman(a, b).numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rank_average(a.flatten(1)).numpy(), scipy.stats.rankdata(a.flatten(1), axis=1))


def test_spearman_of_a_constant_map_is_nan_as_scipy_and_one_of_a_map_with_itself() -> None:
    a, _ = pairs()["random"]
    constant = torch.ones_like(a[:1])
    assert torch.isnan(spearman(constant, a[:1])).all()
    assert torch.equal(spearman(a, a), torch.ones(len(a), dtype=torch.float64))
    assert torch.equal(spearman(a, -a), -torch.ones(len(a), dtype=torch.float64))


@pytest.mark.parametrize("case", ["random", "tied", "tied vs random"])
def test_ssim_of_minmax_normalized_maps_equals_skimage_defaults(case: str) -> None:
    a, b = (minmax_normalize(m) for m in pairs()[case])
    expected = [structural_similarity(x.numpy(), y.numpy(), data_range=1.0) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim(a, b).numpy(), expected, rtol=0, atol=1e-12)
    wide = [structural_similarity(x.numpy(), y.numpy(), data_range=2.0, win_size=9) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim(a, b, data_range=2.0, win_size=9).numpy(), wide, rtol=0, atol=1e-12)


def test_minmax_normalize_maps_each_map_onto_zero_one_and_a_constant_map_to_zero() -> None:
    maps = torch.tensor([[[2.0, 4.0], [3.0, 6.0]], [[5.0, 5.0], [5.0, 5.0]]])
    expected = torch.tensor([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    assert torch.equal(minmax_normalize(maps), expected)
    assert maps[0, 0, 0] == 2.0  # the input is not modified


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda: spearman(torch.rand(2, 5, 5), torch.rand(2, 5, 4)), "maps", "differ in shape"),
        (lambda: spearman(torch.rand(2, 1), torch.rand(2, 1)), "maps", "at least 2 values"),
        (lambda: ssim(torch.rand(2, 6, 9), torch.rand(2, 6, 9)), "maps", "H, W >= 7"),
        (lambda: ssim(torch.rand(2, 9, 9), torch.rand(2, 9, 9), win_size=4), "win_size", "odd"),
        (lambda: ssim(torch.rand(2, 9, 9), torch.rand(2, 9, 9), data_range=0), "data_range", "> 0"),
    ],
)
def test_bad_arguments_raise_a_config_error_naming_the_argument(call, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        call()
    assert info.value.field == field
