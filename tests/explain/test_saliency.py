"""Saliency maps: the value against captum and a hand-computed linear model, targets, SmoothGrad, and that a
call leaves the model and the input exactly as it found them."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from torch import nn

from visionlab.errors import ConfigError
from visionlab.explain import saliency
from visionlab.models import build_model


def _cnn(seed: int = 0) -> nn.Module:
    """A tiny CNN with batch norm and dropout, its running statistics moved off their defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),
    )  # fmt: skip
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 6, 6))  # non-trivial running statistics
    return model


def _captum_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|∂ log_softmax(model(x))_t / ∂x| = |∂ CE / ∂x| by captum, max over channels."""
    x = x.detach().clone().requires_grad_(True)
    attribution = Saliency(lambda inp: F.log_softmax(model(inp), dim=1)).attribute(x, target=target, abs=True)
    return attribution.amax(dim=1)


def test_equals_captum_on_log_softmax_for_a_batch_norm_cnn() -> None:
    model = _cnn().eval()
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    pred = model(x).argmax(1)
    ours = saliency(model, x)
    assert ours.shape == (4, 6, 6)
    torch.testing.assert_close(ours, _captum_map(model, x, pred), rtol=1e-5, atol=1e-7)
    assert ours.abs().sum() > 0


def test_equals_captum_on_log_softmax_for_simplenet() -> None:
    torch.manual_seed(0)
    model = build_model("simplenet", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    pred = model(x).argmax(1)
    torch.testing.assert_close(saliency(model, x), _captum_map(model, x, pred), rtol=1e-5, atol=1e-8)


def _linear_model() -> nn.Module:
    """logits = W x + b on a flattened 2x2 image, with W's first column (0, ln 3, 0): for x = (1, 0, 0, 0) the
    logits are (0, ln 3, 0) + b, softmax = (0.2, 0.6, 0.2), prediction 1."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 1, 2, -1], [math.log(3), 0, 1, 1], [0, 2, -3, 2]]))
        model[1].bias.fill_(1.0)  # softmax ignores a common shift
    return model


def test_linear_model_by_hand() -> None:
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # ∂CE/∂x = (softmax - onehot(1))ᵀ W = 0.2 W₀ - 0.4 W₁ + 0.2 W₂ = (-0.4 ln 3, 0.6, -0.6, -0.2).
    expected = torch.tensor([[[0.4 * math.log(3), 0.6], [0.6, 0.2]]])
    torch.testing.assert_close(saliency(_linear_model(), x), expected)
    signed = saliency(_linear_model(), x, abs=False, reduce=None)
    torch.testing.assert_close(signed, torch.tensor([[[[-0.4 * math.log(3), 0.6], [-0.6, -0.2]]]]))
    # Class 0 instead: (softmax - onehot(0))ᵀ W = -0.8 W₀ + 0.6 W₁ + 0.2 W₂ = (0.6 ln 3, -0.4, -1.6, 1.8).
    torch.testing.assert_close(
        saliency(_linear_model(), x, target=0, abs=False), torch.tensor([[[0.6 * math.log(3), -0.4], [-1.6, 1.8]]])
    )


def test_channel_reductions_on_a_two_channel_linear_model() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -3.0], [0.0, 0.0]]))
        model[1].bias.zero_()
    x = torch.zeros(1, 2, 1, 1)  # logits (0, 0): softmax (0.5, 0.5), prediction 0 (first maximum)
    # ∂CE/∂x = (-0.5, 0.5) W = (-0.5, 1.5) over the two channels.
    torch.testing.assert_close(saliency(model, x, reduce=None).flatten(), torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(saliency(model, x, reduce="max").flatten(), torch.tensor([1.5]))
    torch.testing.assert_close(saliency(model, x, reduce="mean").flatten(), torch.tensor([1.0]))


def test_default_target_is_the_prediction_and_labels_change_the_map() -> None:
    model = _cnn().eval()
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    pred = model(x).argmax(1)
    default = saliency(model, x)
    assert torch.equal(default, saliency(model, x, target=pred))
    other = saliency(model, x, target=(pred + 1) % 5)
    assert not torch.allclose(default, other)
    # A map depends on its own example only, not on the batch size or chunking.
    torch.testing.assert_close(saliency(model, x, batch_size=3), default)
    torch.testing.assert_close(saliency(model, x[1:2]), default[1:2])


def test_works_under_no_grad_and_inference_mode() -> None:
    model = _linear_model()
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    expected = saliency(model, x)
    with torch.no_grad():
        assert torch.equal(saliency(model, x), expected)
    with torch.inference_mode():
        inference_x = x.clone()
        assert torch.equal(saliency(model, inference_x), expected)
        assert torch.equal(saliency(model, inference_x, smoothgrad_samples=2, noise_std=0.0), expected)
    assert torch.equal(saliency(model, inference_x), expected)  # an inference tensor, outside the mode


def _frozen_train_mode_cnn() -> tuple[nn.Module, dict[str, bool], dict[str, torch.Tensor]]:
    model = _cnn()
    model[3].eval()  # a mixed state: one submodule in eval mode, the rest training
    model[0].weight.requires_grad_(False)
    model[1].bias.requires_grad_(False)
    model[9].weight.grad = torch.full_like(model[9].weight, 7.0)
    return model, {n: m.training for n, m in model.named_modules()}, {n: b.clone() for n, b in model.named_buffers()}


def _assert_untouched(
    model: nn.Module, modes: dict[str, bool], buffers: dict[str, torch.Tensor], grad: torch.Tensor
) -> None:
    assert {n: m.training for n, m in model.named_modules()} == modes
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    frozen = {"0.weight", "1.bias"}
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        n: n not in frozen for n, _ in model.named_parameters()
    }
    assert model[9].weight.grad is grad and torch.equal(grad, torch.full_like(grad, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "9.weight")


@pytest.mark.parametrize("smoothgrad_samples", [0, 2])
def test_no_side_effects_on_model_or_input(smoothgrad_samples: int) -> None:
    model, modes, buffers = _frozen_train_mode_cnn()
    grad = model[9].weight.grad
    x = torch.rand(3, 3, 6, 6)
    x_before = x.clone()
    y = torch.rand(3, 3, 6, 6, requires_grad=True)
    y.grad = torch.ones_like(y)
    y_grad, y_before = y.grad, y.detach().clone()
    saliency(model, x, smoothgrad_samples=smoothgrad_samples)
    saliency(model, y, smoothgrad_samples=smoothgrad_samples)
    _assert_untouched(model, modes, buffers, grad)
    assert not x.requires_grad and x.grad is None and torch.equal(x, x_before)
    assert y.requires_grad and y.grad is y_grad and torch.equal(y_grad, torch.ones_like(y))
    assert torch.equal(y.detach(), y_before)


def test_maps_are_taken_in_eval_mode() -> None:
    model = _cnn()
    x = torch.rand(3, 3, 6, 6)
    expected = saliency(model.eval(), x)
    model.train()
    torch.testing.assert_close(saliency(model, x), expected)  # dropout off, running statistics used


def test_state_is_restored_when_the_call_raises() -> None:
    model, modes, buffers = _frozen_train_mode_cnn()
    grad = model[9].weight.grad
    with pytest.raises(ConfigError, match=r"target: class indices must be in \[0, 5\)"):
        saliency(model, torch.rand(2, 3, 6, 6), target=torch.tensor([0, 5]))
    _assert_untouched(model, modes, buffers, grad)

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.bn(x)
            raise RuntimeError("boom")

    broken = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        saliency(broken, torch.rand(2, 3, 4, 4))
    assert broken.training and broken.bn.training
    assert torch.equal(broken.bn.running_mean, torch.zeros(3))


def test_smoothgrad_without_noise_is_plain_saliency() -> None:
    model = _cnn().eval()
    x = torch.rand(3, 3, 6, 6)
    plain = saliency(model, x)
    assert torch.equal(saliency(model, x, smoothgrad_samples=4, noise_std=0.0), plain)
    torch.testing.assert_close(saliency(model, x, smoothgrad_samples=3, noise_std=0.0), plain)


def test_smoothgrad_is_deterministic_given_a_generator() -> None:
    model = _cnn().eval()
    x = torch.rand(4, 3, 6, 6)

    def run(seed: int, batch_size: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return saliency(model, x, smoothgrad_samples=3, noise_std=0.2, generator=gen, batch_size=batch_size)

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.allclose(first, run(1))
    assert not torch.allclose(first, saliency(model, x))
    torch.testing.assert_close(run(0, batch_size=3), first)  # the noise does not depend on chunking


class _Recorder(nn.Module):
    """Records every input it sees; logits are a fixed linear function of the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_smoothgrad_noise_is_clipped_to_the_pixel_range_and_averaged() -> None:
    model = _Recorder()
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.02]]]]).repeat(2, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    maps = saliency(model, x, smoothgrad_samples=5, noise_std=0.5, generator=gen, reduce=None)
    clean, *noisy = model.seen
    assert torch.equal(clean, x)  # the prediction (the target) is taken on the clean images
    assert len(noisy) == 5
    noisy_all = torch.stack(noisy)
    assert noisy_all.min() == 0.0 and noisy_all.max() == 1.0  # clipped, and the noise did reach the bounds
    assert not torch.equal(noisy_all[0], x)
    # The mean of the per-sample |gradients|, each with the clean prediction as target.
    target = model.linear(x.flatten(1)).argmax(1)
    model.seen.clear()
    expected = torch.stack([saliency(model, n, target=target, reduce=None) for n in noisy]).mean(0)
    torch.testing.assert_close(maps, expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(reduce="median"), ConfigError, r"reduce: must be one of \('max', 'mean'\) or None, got 'median'"),
        (dict(noise_std=-0.1), ConfigError, "noise_std: must be a finite number >= 0"),
        (dict(noise_std=float("nan")), ConfigError, "noise_std: must be a finite number >= 0"),
        (dict(smoothgrad_samples=-1), ConfigError, "smoothgrad_samples: must be an integer >= 0, got -1"),
        (dict(smoothgrad_samples=2.5), ConfigError, "smoothgrad_samples: must be an integer >= 0"),
        (dict(batch_size=0), ConfigError, "batch_size: must be an integer >= 1 or None, got 0"),
        (dict(target=torch.tensor([0, 1, 2])), ValueError, r"target must have shape \(2,\).*got \(3,\)"),
        (dict(target=torch.tensor([0.0, 1.0])), ValueError, "target must be None, an int or an integer tensor"),
        (dict(target=-1), ConfigError, r"class indices must be in \[0, 5\), got -1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        saliency(_cnn().eval(), torch.rand(2, 3, 6, 6), **kwargs)


@pytest.mark.parametrize("images", [torch.rand(3, 6, 6), torch.rand(1, 2, 3, 6, 6), torch.zeros(1, 3, 6, 6).long()])
def test_images_must_be_floating_point_4d(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"images must be a floating-point tensor \(N, C, H, W\)"):
        saliency(_cnn().eval(), images)


def test_smoothgrad_noise_is_the_generator_draw_at_the_default_std() -> None:
    model = _Recorder().double()
    x = torch.tensor([[[[0.5, 0.25], [0.75, 0.5]]]], dtype=torch.float64).repeat(2, 1, 1, 1)
    saliency(model, x, smoothgrad_samples=2, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    draws = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    clean, *noisy = model.seen
    assert torch.equal(clean, x) and len(noisy) == 2
    for seen, draw in zip(noisy, draws, strict=True):  # x + 0.1 N(0, 1), float64 draws, clipped to [0, 1]
        assert torch.equal(seen, (x + 0.1 * draw).clamp(0.0, 1.0))


def test_batch_size_sets_the_chunks_the_model_sees() -> None:
    model = _Recorder()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    whole = saliency(model, x, reduce=None)
    model.seen.clear()
    chunked = saliency(model, x, reduce=None, batch_size=2)
    assert [len(seen) for seen in model.seen] == [2, 2, 1]
    assert torch.equal(torch.cat(model.seen), x)
    torch.testing.assert_close(chunked, whole)
    model.seen.clear()
    torch.testing.assert_close(saliency(model, x, reduce=None, batch_size=1), whole)  # 1 is allowed
    assert [len(seen) for seen in model.seen] == [1] * 5


def test_mean_reduction_keeps_one_map_per_image() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -3.0], [0.0, 0.0]]))
        model[1].bias.zero_()
    # As in the two-channel test above, per image: |∂CE/∂x| = (0.5, 1.5), mean 1.0, max 1.5.
    x = torch.zeros(2, 2, 1, 1)
    assert torch.equal(saliency(model, x, reduce="mean"), torch.ones(2, 1, 1))
    assert torch.equal(saliency(model, x, reduce="max"), torch.full((2, 1, 1), 1.5))


def test_integer_targets_of_any_width_are_used_as_classes() -> None:
    model = _linear_model()
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]).repeat(2, 1, 1, 1)
    expected = saliency(model, x, target=torch.tensor([0, 2]))
    assert torch.equal(saliency(model, x, target=torch.tensor([0, 2], dtype=torch.int32)), expected)
    assert torch.equal(saliency(model, x, target=torch.tensor([0, 2], dtype=torch.uint8)), expected)
    by_int = saliency(model, x, target=0, abs=False)
    torch.testing.assert_close(by_int, torch.tensor([[[0.6 * math.log(3), -0.4], [-1.6, 1.8]]]).repeat(2, 1, 1))


def test_a_model_that_does_not_return_logits_is_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Unflatten(1, (3, 1)))
    with pytest.raises(ValueError, match=r"^saliency: the model must return logits \(N, K\), got \(2, 3, 1\)$"):
        saliency(model, torch.rand(2, 1, 2, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=True), "batch_size: must be an integer >= 1 or None, got True"),
        (dict(batch_size=2.5), "batch_size: must be an integer >= 1 or None, got 2.5"),
        (dict(smoothgrad_samples=True), "smoothgrad_samples: must be an integer >= 0, got True"),
        (dict(noise_std=-0.1), r"noise_std: must be a finite number >= 0 \(pixel units\), got -0.1"),
    ],
)
def test_whole_option_error_messages(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        saliency(_linear_model(), torch.rand(2, 1, 2, 2), **kwargs)


@pytest.mark.parametrize(
    ("images", "got"),
    [([[[[0.5]]]], "list"), (torch.rand(3, 6, 6), r"\(3, 6, 6\)"), (torch.zeros(1, 3, 6, 6).long(), r"\(1, 3, 6, 6\)")],
)
def test_bad_images_messages_name_what_was_given(images, got: str) -> None:
    message = rf"^saliency: images must be a floating-point tensor \(N, C, H, W\) in \[0, 1\], got {got}$"
    with pytest.raises(ValueError, match=message):
        saliency(_cnn().eval(), images)


@pytest.mark.parametrize(
    "target", [torch.tensor([True, False]), torch.tensor([0.0, 1.0]), torch.tensor([1j, 0j]), [0, 1], True]
)
def test_non_integer_targets_are_refused(target) -> None:
    message = f"saliency: target must be None, an int or an integer tensor (N,), got {target!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        saliency(_linear_model(), torch.rand(2, 1, 2, 2), target=target)
