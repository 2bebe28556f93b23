"""Threat models: projection, steps and random starts stay in the ball and in [0, 1]; settings are validated."""

from __future__ import annotations

import pytest
import torch

from visionlab.errors import ConfigError
from visionlab.robustness.steps import L2Step, LinfStep, make_step

from .conftest import batch

EPS_C = (0.05, 0.1, 0.2)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """Max |t| per channel, shape (C,)."""
    return t.abs().amax(dim=(0, 2, 3))


def test_linf_project_clamps_to_per_channel_box_and_pixel_range() -> None:
    x = batch()
    far = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    out = LinfStep(EPS_C, 0.01).project(far, x)
    assert torch.all(_per_channel(out - x) <= torch.tensor(EPS_C, dtype=x.dtype) + 1e-15)
    assert out.min() >= 0 and out.max() <= 1
    inside = x + 0.5 * (out - x)  # already in the box: unchanged
    torch.testing.assert_close(LinfStep(EPS_C, 0.01).project(inside, x), inside.clamp(0, 1), rtol=0, atol=1e-15)


def test_linf_step_is_signed_and_step_project_equals_project_of_step() -> None:
    x, gen = batch(), torch.Generator().manual_seed(3)
    grad = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    threat = LinfStep(EPS_C, (0.03, 0.02, 0.01))
    x_adv = threat.random_init(x, gen)
    stepped = threat.step(x_adv, grad)
    expected = (x_adv + torch.tensor([0.03, 0.02, 0.01], dtype=x.dtype).view(1, 3, 1, 1) * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(stepped, expected, rtol=0, atol=0)
    fused = threat.step_project(x_adv, grad.clone(), x)
    torch.testing.assert_close(fused, threat.project(stepped, x), rtol=0, atol=1e-15)


def test_linf_random_init_is_uniform_in_the_box_and_reproducible() -> None:
    x = torch.full((64, 3, 6, 6), 0.5, dtype=torch.float64)
    a = LinfStep(EPS_C, 0.01).random_init(x, torch.Generator().manual_seed(5))
    b = LinfStep(EPS_C, 0.01).random_init(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    spread = _per_channel(a - x)
    eps = torch.tensor(EPS_C, dtype=x.dtype)
    assert torch.all(spread <= eps) and torch.all(spread > 0.95 * eps)  # fills the box, per channel
    assert abs((a - x).mean().item()) < 0.01


def test_l2_project_step_and_random_init_respect_the_ball() -> None:
    x, gen = batch(), torch.Generator().manual_seed(2)
    threat = L2Step(0.3, 0.1)
    far = (x + torch.randn(x.shape, generator=gen, dtype=x.dtype)).clamp(0, 1)
    norms = (threat.project(far, x) - x).flatten(1).norm(dim=1)
    assert torch.all(norms <= 0.3 + 1e-12)
    grad = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    mid = torch.full_like(x, 0.5)  # away from the [0, 1] bounds: the step has length exactly step_size
    torch.testing.assert_close((threat.step(mid, grad) - mid).flatten(1).norm(dim=1), torch.full((8,), 0.1).double())
    start = threat.random_init(x, gen)
    assert torch.all((start - x).flatten(1).norm(dim=1) <= 0.3 + 1e-12) and start.min() >= 0 and start.max() <= 1


def test_l2_per_channel_is_the_ellipsoid_of_weighted_norm_one() -> None:
    x, gen = torch.full((4, 3, 6, 6), 0.5, dtype=torch.float64), torch.Generator().manual_seed(4)
    eps = torch.tensor(EPS_C, dtype=x.dtype).view(1, 3, 1, 1)
    threat = L2Step(EPS_C, tuple(0.5 * e for e in EPS_C))
    far = x + 0.2 * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    weighted = ((threat.project(far, x) - x) / eps).flatten(1).norm(dim=1)
    torch.testing.assert_close(weighted, torch.ones(4, dtype=x.dtype))  # far outside: lands on the surface


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_radius_leaves_images_unchanged(norm: str) -> None:
    x, gen = batch(), torch.Generator().manual_seed(0)
    threat = make_step(norm, 0.0, 0.01)
    grad = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    assert torch.equal(threat.random_init(x, gen), x)
    assert torch.equal(threat.step_project(x.clone(), grad, x), x)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(norm="linf", eps=-0.1, step_size=0.01), "eps"),
        (dict(norm="linf", eps=1.5, step_size=0.01), "eps"),
        (dict(norm="linf", eps=float("nan"), step_size=0.01), "eps"),
        (dict(norm="linf", eps=0.1, step_size=-1.0), "step"),
        (dict(norm="linf", eps="0.1", step_size=0.01), "eps"),
        (dict(norm="linf", eps=True, step_size=0.01), "eps"),
        (dict(norm="l2", eps=(0.1, 0.2), step_size=0.01), "step"),
        (dict(norm="l2", eps=(0.1, 0.2), step_size=(0.01, 0.01)), "step"),
        (dict(norm="l2", eps=(0.0, 0.2), step_size=(0.0, 0.02)), "eps"),
        (dict(norm="l3", eps=0.1, step_size=0.01), "norm"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_step(kwargs.pop("norm"), kwargs["eps"], kwargs["step_size"])
    assert info.value.field == field


def test_l2_radius_may_exceed_one_and_channel_count_is_checked_on_use() -> None:
    assert L2Step(3.0, 0.5).eps == 3.0  # an L2 radius in pixels can be > 1 (ImageNet uses 3.0)
    threat = LinfStep((0.1, 0.1), 0.01)
    threat.project(batch(channels=2), batch(channels=2))  # cached for 2 channels...
    with pytest.raises(ConfigError) as info:  # ...and still checked for 3
        threat.project(batch(), batch())
    assert info.value.field == "eps" and "3 channels" in str(info.value)
