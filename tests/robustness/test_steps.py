"""Threat models: projection, steps and random starts stay in the ball and in [0, 1]; settings are validated."""

from __future__ import annotations

import pytest
import torch

from visionlab.errors import ConfigError
from visionlab.robustness.steps import L2Step, LinfStep, default_step, make_step, scale_radius

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


def test_linf_step_leaves_pixels_with_a_zero_gradient_where_they_are() -> None:
    x_adv = torch.full((1, 1, 1, 4), 0.5, dtype=torch.float64)
    grad = torch.tensor([2.0, 0.0, -3.0, 0.0], dtype=torch.float64).view(1, 1, 1, 4)
    out = LinfStep(0.1, 0.25).step(x_adv, grad)
    assert out.flatten().tolist() == [0.75, 0.5, 0.25, 0.5]  # sign(0) = 0: no move, no division


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm as (N, 1, 1, 1), computed without the module's helper."""
    return t.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()


def test_l2_project_is_radial_shrinking_then_the_pixel_range() -> None:
    # Inputs outside [0, 1] (an unclamped step) make both clamps visible.
    x = torch.tensor([[0.9, 0.1], [0.5, 0.05]], dtype=torch.float64).view(2, 1, 1, 2)
    x_adv = torch.tensor([[1.3, -0.2], [0.56, -0.03]], dtype=torch.float64).view(2, 1, 1, 2)
    out = L2Step(0.25, 0.1).project(x_adv, x)
    # Example 0: delta (0.4, -0.3), norm 0.5 -> halved to (0.2, -0.15) -> (1.1, -0.05) -> clipped to (1, 0).
    # Example 1: delta (0.06, -0.08), norm 0.1 <= 0.25 -> kept -> (0.56, -0.03) -> clipped to (0.56, 0).
    assert out.flatten().tolist() == pytest.approx([1.0, 0.0, 0.56, 0.0], abs=1e-15)


def test_l2_step_is_the_normalized_gradient_then_the_pixel_range() -> None:
    x_adv = torch.tensor([0.95, 0.05, 0.5], dtype=torch.float64).view(1, 1, 1, 3)
    grad = torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64).view(1, 1, 1, 3)  # |grad| = 5
    out = L2Step(1.0, 0.5).step(x_adv, grad)  # moves +0.3, -0.4, 0: both bounds reached
    assert out.flatten().tolist() == pytest.approx([1.0, 0.0, 0.5], abs=1e-15)
    inside = L2Step(1.0, 0.05).step(x_adv, grad).flatten().tolist()
    assert inside == pytest.approx([0.95 + 0.03, 0.05 - 0.04, 0.5], abs=1e-12)


def test_l2_random_init_is_the_hand_computed_uniform_draw_in_the_ball() -> None:
    x = batch(4, channels=2, size=2, lo=0.3, hi=0.7)  # d = 8 pixels an example
    out = L2Step(0.25, 0.1).random_init(x, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # the same draws by hand: a normal direction, then a radius
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    radius = torch.rand((4, 1, 1, 1), generator=gen, dtype=x.dtype) ** (1 / 8)  # uniform in the ball's volume
    expected = (x + 0.25 * radius * z / (_l2(z) + 1e-10)).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    assert (z < 0).any()  # the direction is normal, not uniform in [0, 1): every orthant is reachable
    assert L2Step(0.25, 0.1).random_init(x[:1]).shape == (1, 2, 2, 2)  # a batch of one image


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_radius_leaves_images_unchanged(norm: str) -> None:
    x, gen = batch(), torch.Generator().manual_seed(0)
    threat = make_step(norm, 0.0, 0.01)
    grad = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    assert torch.equal(threat.random_init(x, gen), x)
    assert torch.equal(threat.step_project(x.clone(), grad, x), x)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("linf", -0.1, 0.01), "eps: must be in [0, 1] (pixel units, images in [0, 1]), got -0.1"),
        (("linf", 1.5, 0.01), "eps: must be in [0, 1] (pixel units, images in [0, 1]), got 1.5"),
        (("linf", float("nan"), 0.01), "eps: must be in [0, 1] (pixel units, images in [0, 1]), got nan"),
        (("linf", 0.1, -1.0), "step: must be a finite number >= 0 (pixel units, images in [0, 1]), got -1.0"),
        (("linf", 0.1, float("inf")), "step: must be a finite number >= 0 (pixel units, images in [0, 1]), got inf"),
        (("l2", float("inf"), 0.1), "eps: must be a finite number >= 0 (pixel units, images in [0, 1]), got inf"),
        (("linf", [0.1, True], 0.01), "eps: must be a number or one number per channel, got [0.1, True]"),
        (("linf", "0.1", 0.01), "eps: must be a number or one number per channel, got '0.1'"),
        (("linf", True, 0.01), "eps: must be a number or one number per channel, got True"),
        (("linf", [], 0.01), "eps: must be a number or one number per channel, got []"),
        (("linf", [0.1, "a"], 0.01), "eps: must be a number or one number per channel, got [0.1, 'a']"),
        (
            ("l2", (0.1, 0.2), 0.01),
            "step: a per-channel L2 ball needs per-channel eps and step of the same length "
            "(step proportional to eps), got eps=[0.1, 0.2], step=0.01",
        ),
        (
            ("l2", 0.1, (0.01, 0.02)),
            "step: a per-channel L2 ball needs per-channel eps and step of the same length "
            "(step proportional to eps), got eps=0.1, step=[0.01, 0.02]",
        ),
        (("l2", (0.1, 0.2), (0.01, 0.01)), "step: a per-channel L2 step must be proportional to eps, got [0.01, 0.01]"),
        (
            ("l2", (0.1, 0.2), (0.01, 0.02, 0.04)),
            "step: a per-channel L2 ball needs per-channel eps and step of the same length "
            "(step proportional to eps), got eps=[0.1, 0.2], step=[0.01, 0.02, 0.04]",
        ),
        (("l2", (0.0, 0.2), (0.0, 0.02)), "eps: per-channel L2 radii must be > 0, got [0.0, 0.2]"),
        (("l3", 0.1, 0.01), "norm: must be one of ('linf', 'l2'), got 'l3'"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_step(*args)
    assert str(info.value) == message and info.value.field == message.split(":")[0]


def test_per_channel_l2_steps_along_the_weighted_gradient() -> None:
    threat = L2Step((0.1, 0.2), (0.05, 0.1))  # step = 0.5 eps: a weighted length of 0.5
    x_adv = torch.full((1, 2, 1, 1), 0.5, dtype=torch.float64)
    grad = torch.tensor([3.0, 2.0], dtype=torch.float64).view(1, 2, 1, 1)
    # weighted = grad * eps = (0.3, 0.4), norm 0.5 -> (0.6, 0.8); times eps * 0.5 -> (0.03, 0.08)
    shrink = 0.5 / (0.5 + L2Step.tiny)  # the norm's 1e-10 guard, visible at this precision
    assert threat.step(x_adv, grad).flatten().tolist() == pytest.approx([0.5 + 0.03 * shrink, 0.5 + 0.08 * shrink],
                                                                        rel=0, abs=1e-15)  # fmt: skip
    x = torch.full((1, 2, 1, 1), 0.5, dtype=torch.float64)
    inside = torch.tensor([0.53, 0.58], dtype=torch.float64).view(1, 2, 1, 1)  # weighted norm 0.5: kept
    assert torch.equal(threat.project(inside, x), inside)


def test_l2_settings_at_the_edges_of_what_is_accepted() -> None:
    assert L2Step((0.1, 0.2), (0.0, 0.0))._ratio == 0.0  # a zero step is proportional to any eps
    nearly = L2Step((0.01, 0.01), (1.0, 1.0 + 1e-11))  # ratios 100 and 100 + 1e-9: rounding, accepted
    assert nearly._ratio == 100.0
    x = torch.full((1, 1, 1, 2), 0.5, dtype=torch.float64)
    inside = x + torch.tensor([0.3, 0.4], dtype=torch.float64).view(1, 1, 1, 2)  # norm 0.5 < 1
    assert torch.equal(L2Step(1.0, 0.1).project(inside, x), inside)  # a radius of exactly 1 shrinks nothing


def test_l2_radius_may_exceed_one_and_channel_count_is_checked_on_use() -> None:
    assert L2Step(3.0, 0.5).eps == 3.0  # an L2 radius in pixels can be > 1 (ImageNet uses 3.0)
    threat = LinfStep((0.1, 0.1), 0.01)
    threat.project(batch(channels=2), batch(channels=2))  # cached for 2 channels...
    with pytest.raises(ConfigError) as info:  # ...and still checked for 3
        threat.project(batch(), batch())
    assert info.value.field == "eps" and "3 channels" in str(info.value)


def test_radii_from_tensors_edges_and_norm_names() -> None:
    assert LinfStep(torch.tensor(0.25), 0.01).eps == 0.25  # a 0-d tensor: a scalar
    assert LinfStep(torch.tensor([0.25, 0.5]), 0.01).eps == (0.25, 0.5)  # 1-d: per channel
    assert LinfStep(1.0, 1.0).eps == 1.0  # the whole pixel range is allowed
    assert isinstance(make_step("LInf", 0.1, 0.01), LinfStep)
    with pytest.raises(ConfigError) as info:
        make_step(None, 0.1, 0.01)
    assert str(info.value) == "norm: must be one of ('linf', 'l2'), got None"
    threat = LinfStep(0.1, (0.01, 0.02))  # a per-channel step for two channels, used on three
    with pytest.raises(ConfigError) as info:
        threat.step(batch(), batch())
    assert str(info.value) == "step: has 2 per-channel values but the images have 3 channels"


def test_default_step_is_two_and_a_half_radii_over_the_steps() -> None:
    """Madry et al.'s 2.5 eps / steps, computed as eps * (2.5 / steps): eps / 4 at 10 steps (the monitor's and the
    CLI's old default, the very same float), eps / 2 at 5, per channel like eps, another ratio when asked."""
    assert default_step(0.1, 10) == 0.1 / 4 == 0.025
    assert default_step(0.08, 5) == 0.08 / 2
    assert default_step(0.3, 3) == 0.3 * (2.5 / 3)
    assert default_step((0.1, 0.2), 10) == (0.025, 0.05)
    assert default_step(0.1, 7, 1.0) == 0.1 * (1.0 / 7)
    per_channel = default_step(torch.tensor([0.1, 0.2], dtype=torch.float64), 5)
    assert per_channel.dtype == torch.float64 and per_channel.tolist() == [0.5 * 0.1, 0.5 * 0.2]


def test_scale_radius_keeps_the_radius_kind() -> None:
    assert scale_radius(2, 1.25) == 2.5
    assert scale_radius([0.1, 0.2], 2.0) == (0.2, 0.4)
