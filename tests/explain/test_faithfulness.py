"""Deletion and insertion curves (Petsiuk et al. 2018): hand-computed on a linear model, equal to Quantus'
PixelFlipping, batched without changing a value, and side-effect free."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visionlab.errors import ConfigError
from visionlab.explain import edge_map, gaussian_blur, saliency
from visionlab.explain.faithfulness import (
    BLUR_KERNEL,
    BLUR_SIGMA,
    compare_orderings,
    deletion_curve,
    insertion_curve,
    pixel_order,
)

from .builders import LinearLogit, assert_untouched, mixed_state_net, snapshot

TARGET = torch.zeros(3, dtype=torch.long)


def linear_case() -> tuple[LinearLogit, torch.Tensor, torch.Tensor]:
    """Three 1x4x4 images and ``w`` with positive and negative weights: pixel j adds ``w_j x_j`` to the logit."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 4, 4, generator=g, dtype=torch.float64)
    images = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    return LinearLogit(weight, bias=0.3), images, weight


def hand_auc(start: float, gains: np.ndarray, counts: list[int]) -> np.ndarray:
    """AUC of ``sigmoid(start + sum of the first c gains)`` over the fractions ``c / len(gains)``."""
    logits = start + np.concatenate([[0.0], np.cumsum(gains)])[counts]
    return np.trapezoid(1 / (1 + np.exp(-logits)), np.array(counts) / len(gains))


@pytest.mark.parametrize("steps", [16, 5])
def test_on_a_linear_model_the_exact_ordering_has_the_best_deletion_auc_and_the_reverse_the_worst(steps: int) -> None:
    model, images, w = linear_case()
    contribution = (w * images)[:, 0]  # what deleting each pixel (to 0) takes off the logit
    best = deletion_curve(model, images, contribution, TARGET, steps=steps).auc
    worst = deletion_curve(model, images, -contribution, TARGET, steps=steps).auc
    counts = [k * 16 // steps for k in range(steps + 1)]
    for i in range(3):
        c = contribution[i].flatten().numpy()
        start = 0.3 + c.sum()
        assert best[i].item() == pytest.approx(hand_auc(start, -np.sort(c)[::-1], counts), abs=1e-12)
        assert worst[i].item() == pytest.approx(hand_auc(start, -np.sort(c), counts), abs=1e-12)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # any other ordering lies between the two, image by image
        other = deletion_curve(model, images, torch.rand(3, 4, 4, generator=g), TARGET, steps=steps).auc
        assert (best <= other + 1e-12).all() and (other <= worst + 1e-12).all()


def test_on_a_linear_model_the_exact_ordering_has_the_best_insertion_auc_and_the_reverse_the_worst() -> None:
    model, images, w = linear_case()
    substrate = torch.full_like(images, 0.5)
    gain = (w * (images - substrate))[:, 0]  # what inserting each pixel adds to the logit
    best = insertion_curve(model, images, gain, TARGET, steps=16, substrate=substrate).auc
    worst = insertion_curve(model, images, -gain, TARGET, steps=16, substrate=substrate).auc
    for i in range(3):
        g, start = gain[i].flatten().numpy(), 0.3 + 0.5 * w.sum().item()
        assert best[i].item() == pytest.approx(hand_auc(start, np.sort(g)[::-1], list(range(17))), abs=1e-12)
        assert worst[i].item() == pytest.approx(hand_auc(start, np.sort(g), list(range(17))), abs=1e-12)


def test_curves_start_at_the_image_or_substrate_and_end_at_the_other() -> None:
    model, images, _ = linear_case()
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    p = torch.softmax(model(images), dim=1)[:, 0]
    blurred = torch.softmax(model(gaussian_blur(images, BLUR_SIGMA, BLUR_KERNEL)), dim=1)[:, 0]
    deletion = deletion_curve(model, images, maps, TARGET, steps=4, baseline=0.25)
    insertion = insertion_curve(model, images, maps, TARGET, steps=4)
    torch.testing.assert_close(deletion.probabilities[:, 0], p.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(deletion.probabilities[:, -1], torch.softmax(model(images * 0 + 0.25), 1)[:, 0].detach())
    torch.testing.assert_close(insertion.probabilities[:, 0], blurred.detach())
    torch.testing.assert_close(insertion.probabilities[:, -1], p.detach())
    assert deletion.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and deletion.kind == "deletion"


def test_a_number_baseline_gives_the_curve_of_the_same_baseline_as_an_image() -> None:
    """A number baseline sends the fully deleted image through the model once for all images; an image-shaped
    baseline sends each image's own copy: the curves must be the same."""
    model = mixed_state_net(size=8).eval()
    g = torch.Generator().manual_seed(5)
    images, maps = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 8, 8, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    shared = deletion_curve(model, images, maps, target, steps=8, baseline=0.3, batch_size=5)
    own = deletion_curve(model, images, maps, target, steps=8, baseline=torch.full_like(images, 0.3), batch_size=5)
    torch.testing.assert_close(shared.probabilities, own.probabilities, rtol=0, atol=1e-6)
    assert shared.probabilities[:, -1].unique().numel() == len(target.unique())  # one value per class


def test_pixel_flipping_curves_agree_with_quantus() -> None:
    """Quantus' PixelFlipping flips ``features_in_step`` pixels per step to the image's minimum ("black"; 0 here,
    as each image holds a 0) and records the softmax probability after each step: our curve without its start."""
    quantus = pytest.importorskip("quantus")
    model = mixed_state_net(size=8).eval()
    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 1, 8, 8, generator=g)
    images[:, :, 0, 0] = 0.0
    maps = torch.rand(5, 8, 8, generator=g)  # no ties: Quantus' argsort is not stable
    target = torch.tensor([0, 1, 2, 0, 1])
    ours = deletion_curve(model, images, maps, target, steps=16, batch_size=7)
    metric = quantus.PixelFlipping(features_in_step=4, normalise=False, abs=False, perturb_baseline="black",
                                   disable_warnings=True)  # fmt: skip
    theirs = metric(model=model, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=maps.unsqueeze(1).numpy(),
                    softmax=True, device="cpu")  # fmt: skip
    np.testing.assert_allclose(ours.probabilities[:, 1:].numpy(), np.array(theirs), rtol=0, atol=1e-6)


def test_ties_are_broken_by_pixel_index_and_the_batch_size_changes_nothing() -> None:
    maps = torch.tensor([[[1.0, 3.0], [3.0, 1.0]]])
    assert pixel_order(maps).tolist() == [[1, 2, 0, 3]]
    model = mixed_state_net(size=8)
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    tied = (images[:, 0] * 3).floor()  # many ties
    curves = [deletion_curve(model, images, tied, steps=7, batch_size=b).probabilities for b in (1, 5, 32, 1000)]
    for other in curves[1:]:
        torch.testing.assert_close(other, curves[0], rtol=0, atol=1e-7)


def test_every_curve_and_comparison_leaves_the_model_and_images_as_they_were() -> None:
    model = mixed_state_net(size=8)
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    before, pixels = snapshot(model), images.clone()
    maps = torch.rand(6, 8, 8)
    deletion_curve(model, images, maps, steps=3)
    insertion_curve(model, images, maps, steps=3)
    result = compare_orderings(model, images, {"gradient": lambda m, x, t: saliency(m, x, t)}, num=4, steps=3)
    assert_untouched(model, before)
    assert torch.equal(images, pixels) and images.grad is None
    assert list(result.curves) == ["gradient", "random", "edge"]
    assert json.loads(json.dumps(result.to_dict()))["num_images"] == 4


def test_compare_orderings_uses_a_seeded_subset_and_ranks_the_exact_ordering_first_on_a_linear_model() -> None:
    model, images, w = linear_case()
    images = torch.cat([images] * 4)  # 12 images
    exact = {"exact": lambda m, x, t: (w * x)[:, 0]}
    one = compare_orderings(model, images, exact, torch.zeros(12, dtype=torch.long), num=5, steps=16,
                            generator=torch.Generator().manual_seed(7))  # fmt: skip
    two = compare_orderings(model, images, exact, torch.zeros(12, dtype=torch.long), num=5, steps=16,
                            generator=torch.Generator().manual_seed(7))  # fmt: skip
    assert one.indices.tolist() == two.indices.tolist() == sorted(one.indices.tolist()) and len(one.indices) == 5
    assert one.seed == 7
    for kind in ("deletion", "insertion"):
        assert torch.equal(one.curves["random"][kind].probabilities, two.curves["random"][kind].probabilities)
    # deleting to black: the exact ordering is the best of every ordering, image by image
    for name in ("random", "edge"):
        assert (one.curves["exact"]["deletion"].auc <= one.curves[name]["deletion"].auc + 1e-12).all()
    rows = {row["method"]: row for row in one.table()}
    assert rows["exact"]["deletion_auc"] == pytest.approx(one.curves["exact"]["deletion"].mean_auc)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m, x: deletion_curve(m, x, torch.rand(2, 8, 8), steps=0), "steps"),
        (lambda m, x: deletion_curve(m, x, torch.rand(2, 8, 7)), "maps"),
        (lambda m, x: deletion_curve(m, x, torch.full((2, 8, 8), float("nan"))), "maps"),
        (lambda m, x: deletion_curve(m, x, torch.rand(2, 8, 8), baseline=torch.zeros(1, 1, 8, 8)), "baseline"),
        (lambda m, x: deletion_curve(m, x, torch.rand(2, 8, 8), batch_size=0), "batch_size"),
        (lambda m, x: deletion_curve(m, x, torch.rand(2, 8, 8), torch.zeros(3, dtype=torch.long)), "target"),
        (lambda m, x: insertion_curve(m, x, torch.rand(2, 8, 8), substrate=torch.zeros(2, 1, 8)), "substrate"),
        (lambda m, x: deletion_curve(m, x[0], torch.rand(2, 8, 8)), "images"),
        (lambda m, x: compare_orderings(m, x, {"edge": edge_map}), "explainers"),
        (lambda m, x: compare_orderings(m, x, {"e": edge_map}, num=0), "num"),
    ],
)
def test_bad_arguments_raise_a_config_error_naming_the_argument(call, field: str) -> None:
    model, images = mixed_state_net(size=8), torch.rand(2, 1, 8, 8)
    with pytest.raises(ConfigError) as info:
        call(model, images)
    assert info.value.field == field


def test_the_fractions_are_exact_when_steps_do_not_divide_the_pixels() -> None:
    curve = deletion_curve(mixed_state_net(size=8), torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8), steps=3)
    assert curve.fractions.tolist() == [0.0, 21 / 64, 42 / 64, 1.0]
