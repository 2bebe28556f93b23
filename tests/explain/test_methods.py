"""The methods by name: each equals its own function, gives a non-negative (N, H, W) map, leaves the model and the
images untouched, and bad names and options raise a ConfigError naming them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.errors import ConfigError
from visionlab.explain import (
    BASELINES,
    DEFAULTS,
    METHODS,
    edge_map,
    explain,
    explainer,
    gradcam,
    integrated_gradients,
    saliency,
)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
    )  # fmt: skip
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 6, 6))
    return model.eval()


def _images() -> torch.Tensor:
    return torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def test_every_name_has_defaults_and_gives_a_non_negative_map() -> None:
    assert set(DEFAULTS) == set(METHODS + BASELINES)
    model, x = _cnn(), _images()
    for name in METHODS + BASELINES:
        maps = explain(model, x, name, **({"samples": 2} if name == "smoothgrad" else {}))
        assert maps.shape == (3, 6, 6) and maps.min() >= 0 and torch.isfinite(maps).all(), name


def test_each_method_is_its_function_with_the_predicted_class_by_default() -> None:
    model, x = _cnn(), _images()
    predicted = model(x).argmax(1)
    torch.testing.assert_close(explain(model, x, "saliency"), saliency(model, x, predicted))
    smooth = saliency(model, x, predicted, smoothgrad_samples=3, noise_std=0.2,
                      generator=torch.Generator().manual_seed(7))  # fmt: skip
    torch.testing.assert_close(explain(model, x, "smoothgrad", samples=3, noise_std=0.2, seed=7), smooth)
    ig = integrated_gradients(model, x, predicted, steps=8, baseline="blur").attributions
    torch.testing.assert_close(explain(model, x, "ig", steps=8, baseline="blur"), ig.sum(dim=1).abs())
    torch.testing.assert_close(explain(model, x, "gradcam", layer="2"), gradcam(model, x, predicted, layer="2"))
    torch.testing.assert_close(explain(model, x, "edge"), edge_map(None, x))


def test_an_explicit_target_is_explained() -> None:
    model, x = _cnn(), _images()
    target = torch.tensor([4, 4, 4])
    torch.testing.assert_close(explain(model, x, "ig", 4, steps=4), explain(model, x, "ig", target, steps=4))
    assert not torch.allclose(explain(model, x, "ig", 0, steps=4), explain(model, x, "ig", 4, steps=4))


def test_the_explainer_carries_its_resolved_options_and_fits_the_explainer_signature() -> None:
    method = explainer("ig", steps=16)
    assert method.name == "ig"
    assert method.options == {**DEFAULTS["ig"], "steps": 16}
    model, x = _cnn(), _images()
    target = model(x).argmax(1)
    torch.testing.assert_close(method(model, x, target), explain(model, x, "ig", steps=16))


def test_a_seeded_random_map_and_smoothgrad_repeat() -> None:
    model, x = _cnn(), _images()
    assert torch.equal(explain(model, x, "random", seed=3), explain(model, x, "random", seed=3))
    assert torch.equal(explain(model, x, "smoothgrad", samples=2), explain(model, x, "smoothgrad", samples=2))


@pytest.mark.parametrize("name", METHODS)
def test_leaves_the_model_and_the_images_untouched(name: str) -> None:
    model = _cnn()
    model.train()
    model[4].weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _images()
    x_before = x.clone()
    options = {"samples": 2} if name == "smoothgrad" else {"steps": 3} if name == "ig" else {}
    explain(model, x, name, **options)
    assert all(m.training for m in model.modules())
    assert model[0].weight.requires_grad and not model[4].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    assert all(not m._forward_hooks for m in model.modules())


def test_an_unknown_method_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="saliency, smoothgrad, ig, gradcam, edge, random") as info:
        explainer("lime")
    assert info.value.field == "method"


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("ig", {"steps": 0}, "steps"),
        ("ig", {"rule": "simpson"}, "rule"),
        ("ig", {"baseline": "white"}, "baseline"),
        ("ig", {"blur_sigma": 1.0}, "blur_sigma"),
        ("ig", {"layer": "0"}, "layer"),
        ("smoothgrad", {"samples": 0}, "samples"),
        ("smoothgrad", {"noise_std": -0.1}, "noise_std"),
        ("saliency", {"samples": 4}, "samples"),
        ("gradcam", {"layer": 3}, "layer"),
        ("gradcam", {"batch_size": 0}, "batch_size"),
        ("random", {"seed": -1}, "seed"),
        ("edge", {"seed": 0}, "seed"),
    ],
)
def test_bad_options_are_refused_before_any_model_runs(name: str, options: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        explainer(name, **options)
    assert info.value.field == field
