"""Integrated Gradients: equal to captum's for every rule, completeness within the quadrature error (shrinking as
steps grow), the baselines, batching, and that a call leaves the model and the images as it found them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from visionlab.errors import ConfigError
from visionlab.explain import RULES, blurred, integrated_gradients, quadrature

from .builders import assert_untouched, mixed_state_net, snapshot


def _net(dtype: torch.dtype = torch.float64) -> nn.Module:
    """A small smooth CNN (tanh, batch norm with moved running statistics, dropout), in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
    ).to(dtype)  # fmt: skip
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 6, 6, dtype=dtype))
    return model.eval()


def _images(n: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_equals_captums_integrated_gradients_for_each_rule(rule: str, baseline: str) -> None:
    model, x, target = _net(), _images(), torch.tensor([0, 2, 4])
    ours = integrated_gradients(model, x, target, steps=7, rule=rule, baseline=baseline, batch_size=5)
    reference = torch.zeros_like(x) if baseline == "black" else blurred(x)
    theirs, delta = IntegratedGradients(model).attribute(
        x, baselines=reference, target=target, n_steps=7, method=rule, return_convergence_delta=True
    )
    # captum rounds the step sizes to float32 (``torch.tensor(step_sizes).float()``): a relative 6e-8 at most
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(ours.completeness_gap, delta, rtol=1e-6, atol=1e-8)


def test_equals_captum_in_float32_with_the_default_rule() -> None:
    model, x = _net(torch.float32), _images(dtype=torch.float32)
    target = model(x).argmax(1)
    ours = integrated_gradients(model, x)  # target: the prediction; 50 Gauss-Legendre nodes, black
    theirs = IntegratedGradients(model).attribute(x, target=target)
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_nodes_and_weights_are_captums(rule: str) -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(rule)
    ours_alphas, ours_weights = quadrature(rule, 9)
    np.testing.assert_allclose(ours_alphas.numpy(), alphas(9), rtol=0, atol=0)
    np.testing.assert_allclose(ours_weights.numpy(), step_sizes(9), rtol=1e-15, atol=0)


def test_completeness_holds_exactly_for_a_linear_model() -> None:
    """f(x) = w·x: the gradient is constant, so every rule integrates it exactly: IG = w ⊙ (x - x')."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    x = _images(2)[:, :, :2, :2]
    result = integrated_gradients(model, x, 1, steps=3, rule="riemann_left")
    expected = model[1].weight[1].detach().view(3, 2, 2) * x
    torch.testing.assert_close(result.attributions, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(result.completeness_gap, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_completeness_gap_is_within_the_riemann_error_and_shrinks_with_steps() -> None:
    """The middle rule's error on [0, 1] is at most max|g''| / (24 n²) for the integrand g; its gap falls ~ 1/n²
    here, and far below the gap of the left rule (error ~ 1/n)."""
    model, x, target = _net(), _images(), torch.tensor([1, 1, 1])
    gaps = {n: integrated_gradients(model, x, target, steps=n, rule="riemann_middle").completeness_gap.abs().max()
            for n in (4, 16, 64)}  # fmt: skip
    assert gaps[4] > 4 * gaps[16] > 16 * gaps[64] > 0
    left = integrated_gradients(model, x, target, steps=16, rule="riemann_left").completeness_gap.abs().max()
    assert left > 4 * gaps[16]
    # Gauss-Legendre with 50 nodes is exact to rounding on this smooth network
    exact = integrated_gradients(model, x, target, steps=50).completeness_gap.abs().max()
    assert exact < 1e-9


def test_the_gap_is_the_sum_minus_the_logit_difference() -> None:
    model, x, target = _net(), _images(), torch.tensor([3, 0, 2])
    result = integrated_gradients(model, x, target, steps=5, rule="riemann_trapezoid")
    with torch.no_grad():
        difference = model(x)[range(3), target] - model(torch.zeros_like(x))[range(3), target]
    torch.testing.assert_close(result.completeness_gap, result.attributions.sum(dim=(1, 2, 3)) - difference)


def test_batch_size_does_not_change_the_result() -> None:
    model, x = _net(), _images(4)
    whole = integrated_gradients(model, x, steps=6, rule="riemann_middle")
    for batch_size in (1, 5, 7, 100):
        chunked = integrated_gradients(model, x, steps=6, rule="riemann_middle", batch_size=batch_size)
        torch.testing.assert_close(chunked.attributions, whole.attributions, rtol=1e-12, atol=1e-14)


def test_a_tensor_baseline_broadcasts_and_an_image_equal_to_its_baseline_gets_zero() -> None:
    model, x = _net(), _images(2)
    result = integrated_gradients(model, x, 0, baseline=x[0], steps=4, rule="riemann_right")
    assert result.attributions[0].abs().max() == 0
    assert result.completeness_gap[0].abs() < 1e-12
    assert result.attributions[1].abs().max() > 0


def test_blurred_keeps_a_constant_image_and_smooths_a_step() -> None:
    flat = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    torch.testing.assert_close(blurred(flat, 1.5), flat)
    step = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    step[..., 4:] = 1.0
    smooth = blurred(step)  # default sigma 0.8 px on 8 px
    assert 0 < smooth[0, 0, 0, 3] < 0.5 < smooth[0, 0, 0, 4] < 1
    torch.testing.assert_close(smooth.sum(dim=-1), step.sum(dim=-1))  # symmetric kernel, replicated borders


def test_leaves_the_model_and_the_images_untouched_also_under_inference_mode() -> None:
    model = mixed_state_net(size=8)  # batch norm training, a frozen bias, gradients already there
    before = snapshot(model)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    with torch.inference_mode():
        result = integrated_gradients(model, x, steps=3, rule="riemann_middle")
    assert_untouched(model, before)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    assert not result.attributions.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": 1, "rule": "riemann_trapezoid"}, "steps"),
        ({"rule": "simpson"}, "rule"),
        ({"baseline": "white"}, "baseline"),
        ({"baseline": torch.zeros(2, 6, 6)}, "baseline"),
        ({"blur_sigma": 2.0}, "blur_sigma"),
        ({"baseline": "blur", "blur_sigma": 0.0}, "blur_sigma"),
        ({"batch_size": 0}, "batch_size"),
        ({"target": 5}, "target"),
    ],
)
def test_bad_arguments_raise_a_config_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        integrated_gradients(_net(), _images(), **kwargs)
    assert info.value.field == field
