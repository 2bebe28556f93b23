"""Randomized smoothing (Cohen et al. 2019): CERTIFY on a linear classifier whose smoothed probabilities are known in
closed form (its radius below the true one, and close to it), exact hand cases (a constant classifier, a tie),
the Clopper–Pearson bound against scipy, results that do not depend on the batch or the split into calls, the
noise itself, the Gaussian-noise training objective, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import beta, binom, binomtest, norm
from torch import nn

from visionlab.errors import ConfigError
from visionlab.robustness import (
    ABSTAIN,
    DEFAULT_RADII,
    Certification,
    GaussianNoiseTraining,
    SmoothedClassifier,
    clopper_pearson_lower,
    default_batch,
    noise_block,
    plot_certified_accuracy,
)

from ..statistical import Statistic


class Linear(nn.Module):
    """Two classes on 1x1x2 images: class 0 where ``<w, x> + b > 0``. Smoothed with N(0, σ² I), class 0 has
    probability Φ((<w, x> + b) / (σ |w|)), and the exact L2 radius of the smoothed classifier is the distance to
    the boundary |<w, x> + b| / |w| (Cohen et al.'s Theorem 1 is tight for linear classifiers)."""

    def __init__(self, w: tuple[float, float], b: float) -> None:
        super().__init__()
        self.w, self.b = torch.tensor(w), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([s, -s], 1)


class Constant(nn.Module):
    """Always class ``c`` of ``k``."""

    def __init__(self, c: int, k: int = 3) -> None:
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((x.shape[0],), self.c), self.k).float()


class Alternating(nn.Module):
    """Class 0 for the even rows of each forward batch, class 1 for the odd: with an even ``n`` and an even batch,
    every image gets exactly ``n / 2`` votes for each class, a tie whatever the noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.arange(x.shape[0]) % 2, 2).float()


def _images(*points: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(points).view(len(points), 1, 1, 2)


# ------------------------------------------------------------------------------------------------ the statistics
@pytest.mark.parametrize(("k", "n", "alpha"), [(1, 1, 0.05), (7, 10, 0.001), (990, 1000, 0.001), (50, 100, 0.01)])
def test_clopper_pearson_lower_bound_is_the_beta_quantile_where_k_successes_become_unlikely(
    k: int, n: int, alpha: float
) -> None:
    lower = clopper_pearson_lower(k, n, alpha)
    assert lower == pytest.approx(beta.ppf(alpha, k, n - k + 1), rel=1e-12)
    # The defining property: at p = lower, k or more successes have probability alpha.
    assert binom.sf(k - 1, n, lower) == pytest.approx(alpha, rel=1e-6)
    # scipy's exact two-sided interval at 1 - 2 alpha has the same lower end (statsmodels' "beta" method, Cohen's).
    assert lower == pytest.approx(binomtest(k, n).proportion_ci(1 - 2 * alpha, method="exact").low, rel=1e-9)


def test_clopper_pearson_by_hand_all_and_no_successes() -> None:
    assert clopper_pearson_lower(10, 10, 0.001) == pytest.approx(0.001 ** (1 / 10), rel=1e-12)  # p^n = alpha
    assert clopper_pearson_lower(0, 10, 0.001) == 0.0


# ------------------------------------------------------------------------------------------------ exact cases
def test_a_constant_classifier_is_certified_at_the_radius_of_all_votes_by_hand() -> None:
    """Every sample votes class 2: p̲_A = alpha^(1/n), the radius σ Φ⁻¹(alpha^(1/n)); the label decides
    correctness, the certified accuracy counts radii >= r."""
    images = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    cert = SmoothedClassifier(Constant(2), 3, sigma=0.5, batch=16).certify(images, torch.tensor([2, 2, 0]), 10, 40,
                                                                           0.01)  # fmt: skip
    p = 0.01 ** (1 / 40)
    assert cert.prediction.tolist() == [2, 2, 2]
    assert cert.p_lower.tolist() == pytest.approx([p] * 3, rel=1e-12)
    assert cert.radius.tolist() == pytest.approx([0.5 * norm.ppf(p)] * 3, rel=1e-12)
    assert cert.correct.tolist() == [True, True, False]
    radius = 0.5 * norm.ppf(p)  # 0.5 * 1.83 = 0.91
    assert cert.certified_accuracy([0.0, radius, radius + 1e-9]) == pytest.approx([200 / 3, 200 / 3, 0.0])


def test_predict_with_a_constant_classifier_follows_the_two_sided_binomial_test() -> None:
    """n votes for one class and none for the next: the two-sided p-value is 2 / 2^n. At alpha 0.05 that rejects
    from n = 6 (0.031), not at n = 5 (0.0625): abstain."""
    smoothed = SmoothedClassifier(Constant(1), 3, sigma=0.25)
    images = torch.zeros(2, 1, 2, 2)
    assert smoothed.predict(images, n=6, alpha=0.05).tolist() == [1, 1]
    assert smoothed.predict(images, n=5, alpha=0.05).tolist() == [ABSTAIN, ABSTAIN]
    assert smoothed.predict(images, n=5, alpha=0.0625).tolist() == [1, 1]  # p-value <= alpha rejects


def test_certify_and_predict_abstain_when_the_top_two_classes_tie() -> None:
    smoothed = SmoothedClassifier(Alternating(), 2, sigma=0.25, batch=8)
    images = torch.zeros(5, 1, 1, 2)
    cert = smoothed.certify(images, torch.zeros(5, dtype=torch.long), n0=10, n=100, alpha=0.001)
    assert smoothed.counts(images, 100).tolist() == [[50, 50]] * 5  # the tie, exactly
    assert cert.prediction.tolist() == [ABSTAIN] * 5
    assert cert.radius.tolist() == [0.0] * 5 and not cert.correct.any()
    assert cert.p_lower.tolist() == pytest.approx([beta.ppf(0.001, 50, 51)] * 5)  # below 1/2
    assert smoothed.predict(images, n=100, alpha=0.5).tolist() == [ABSTAIN] * 5  # p-value 1


# ------------------------------------------------------------------------------------------------ the linear case
@pytest.mark.statistical(seed=0)
def test_certified_radius_of_a_linear_classifier_is_never_above_the_true_one_and_converges_to_it(
    stat_seed: int, stat: Statistic
) -> None:
    """200 points at distances 0.02-0.6 from the boundary of a linear classifier, σ = 0.25, n = 20,000,
    alpha = 0.01: each certified radius exceeds the true one with probability < alpha (the Clopper–Pearson bound is
    conservative), and lies within a few standard errors below it."""
    gen = torch.Generator().manual_seed(stat_seed)
    w, b, sigma, n, alpha, count = torch.tensor([0.6, 0.8]), -0.7, 0.25, 20_000, 0.01, 200
    distance = 0.02 + 0.58 * torch.rand(count, generator=gen)
    side = torch.where(torch.rand(count, generator=gen) < 0.5, 1.0, -1.0)
    base = torch.rand(count, 2, generator=gen)
    points = base - ((base @ w + b) - side * distance)[:, None] * w  # |w| = 1: signed distance side * distance
    labels = (side < 0).long()  # class 0 on the positive side
    cert = SmoothedClassifier(Linear((0.6, 0.8), b), 2, sigma, batch=4096, seed=stat_seed).certify(
        points.view(count, 1, 1, 2), labels, n0=100, n=n, alpha=alpha
    )
    true = distance.double()
    p = torch.from_numpy(norm.cdf((true / sigma).numpy()))
    above = int(((cert.radius > true + 1e-12) & cert.correct).sum())
    wrong = int(((cert.prediction != labels) & (cert.prediction != ABSTAIN)).sum())
    # Each image errs with probability < alpha = 0.01 (here about 0.0097, computed exactly for p_A = Φ(1.2)):
    # binomial(200, 0.01) exceeds 12 with probability 1e-8, while a bound that is no bound (p̂ for p̲_A) errs on
    # about half. bench/statistical_tests.py (20 seeds x {1, 2} threads x {AVX-512, AVX2}, 2026-12-07): 0-6, sd 1.5,
    # the worst 4.0 sd under the bound (seeds 0-39 at one thread: 0-7, mean 2.4).
    stat.check("images certified above their true radius", above + wrong, "<=", 12)
    # Convergence: the gap true - radius is about (z_{1-alpha} + Z) standard errors of p̂, carried through Φ⁻¹
    # (delta method); 7 standard errors beyond z_{1-alpha} is far out. Only images whose p_A < 0.995 (the delta
    # method holds; beyond, p̲_A saturates near alpha^(1/n)). 80 runs (docs/TESTING.md): 193-200 images; largest gap
    # 4.30-6.15 (6.3 sd under its bound), mean gap 2.18-2.41 (z = 2.33; 13 sd inside z ± 1).
    se = torch.sqrt(p * (1 - p) / n) / torch.from_numpy(norm.pdf(norm.ppf(p.numpy())))
    z = float(norm.ppf(1 - alpha))
    inner = (p < 0.995) & cert.correct
    gap_in_se = ((true - cert.radius) / (sigma * se))[inner]
    stat.check("images with p_A < 0.995 certified", int(inner.sum()), ">=", 100)
    stat.check("largest gap, in standard errors", float(gap_in_se.max()), "<=", z + 7)
    stat.check("mean gap, in standard errors", float(gap_in_se.mean()), ">=", z - 1)
    stat.check("mean gap, in standard errors", float(gap_in_se.mean()), "<=", z + 1)


# ------------------------------------------------------------------------------------------------ determinism
def test_results_depend_on_the_seed_only_not_on_the_batch_or_the_split_into_calls() -> None:
    images = torch.rand(5, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 4))
    torch.manual_seed(0)
    nn.init.normal_(model[1].weight, std=3.0)
    labels = torch.tensor([0, 1, 2, 3, 0])

    def certify(batch: int | None, seed: int = 7, sigma: float = 0.5) -> Certification:
        return SmoothedClassifier(model, 4, sigma, batch=batch, seed=seed).certify(images, labels, 30, 300, 0.01)

    reference = certify(1000)
    for other in (certify(1000), certify(1), certify(7), certify(300), certify(None)):
        for key in ("prediction", "p_lower", "radius"):
            assert torch.equal(getattr(other, key), getattr(reference, key)), key
    smoothed = SmoothedClassifier(model, 4, 0.5, batch=64, seed=7)
    split = Certification.concat([smoothed.certify(images[:2], labels[:2], 30, 300, 0.01),
                                  smoothed.certify(images[2:], labels[2:], 30, 300, 0.01, first_index=2)])  # fmt: skip
    assert torch.equal(split.p_lower, reference.p_lower) and torch.equal(split.label, labels)
    assert not torch.equal(certify(1000, seed=8).p_lower, reference.p_lower)  # the seed does choose the noise
    counts = smoothed.counts(images, 300)
    assert counts.sum(1).tolist() == [300] * 5
    assert torch.equal(counts, SmoothedClassifier(model, 4, 0.5, batch=3, seed=7).counts(images, 300))


def test_the_default_pass_is_128_rows_on_the_cpu_and_1000_on_a_gpu() -> None:
    sizes: list[int] = []

    class Record(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            sizes.append(len(x))
            return torch.zeros(x.shape[0], 2)

    SmoothedClassifier(Record(), 2, sigma=0.3).counts(torch.zeros(3, 1, 2, 2), 100)
    assert sizes == [128, 128, 44]  # 300 noisy copies, across the three images
    assert (default_batch("cpu"), default_batch(torch.device("cuda", 1)), default_batch("meta")) == (128, 1000, 1000)


def test_noise_is_gaussian_in_pixel_units_unclipped_and_each_image_gets_its_own_stream() -> None:
    seen: list[torch.Tensor] = []

    class Record(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 2)

    images = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous()
    SmoothedClassifier(Record(), 2, sigma=0.3, batch=999).counts(images, 5000)
    noisy = torch.cat(seen).view(2, 5000, 4)
    noise = (noisy - images.view(2, 1, 4)) / 0.3
    assert noise.mean().abs() < 0.03 and (noise.std() - 1).abs() < 0.03  # 20,000 values per image: 0.007 per sd
    assert noisy.min() < 0 and noisy.max() > 1  # not clipped to [0, 1]
    assert not torch.equal(noise[0], noise[1])  # image 1 does not replay image 0's noise
    assert noise_block((1, 2, 2)) == 2**18 and noise_block((3, 1024, 1024)) == 1


def test_the_model_keeps_its_mode_and_gets_no_gradient() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Dropout(0.5))
    model.train()
    model[2].eval()
    during: list[bool] = []
    model[1].register_forward_hook(lambda m, i, o: during.append(m.training or torch.is_grad_enabled()))
    SmoothedClassifier(model, 2, 0.1).certify(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), 5, 10, 0.1)
    assert during and not any(during)  # eval mode, no autograd graph
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert model[1].weight.grad is None


# ------------------------------------------------------------------------------------------------ results
def test_certified_accuracy_to_dict_and_back_and_the_figure(tmp_path) -> None:
    cert = Certification(
        prediction=torch.tensor([0, 1, ABSTAIN, 2]), p_lower=torch.tensor([0.9, 0.7, 0.4, 0.99], dtype=torch.float64),
        radius=torch.tensor([0.64, 0.26, 0.0, 1.16], dtype=torch.float64), label=torch.tensor([0, 0, 1, 2]),
        sigma=0.5, n0=100, n=1000, alpha=0.001,
    )  # fmt: skip
    assert cert.certified_accuracy([0.0, 0.25, 0.5, 1.0, 1.2]) == [50.0, 50.0, 50.0, 25.0, 0.0]
    found = cert.to_dict([0.0, 1.0])
    assert found["certified_accuracy"] == [{"radius": 0.0, "accuracy": 50.0}, {"radius": 1.0, "accuracy": 25.0}]
    assert (found["images"], found["abstained"], found["sigma"], found["n0"], found["n"]) == (4, 1, 0.5, 100, 1000)
    assert found["images_detail"][1] == {"index": 1, "label": 0, "prediction": 1, "p_lower": 0.7, "radius": 0.26,
                                         "correct": False}  # fmt: skip
    back = Certification.from_dict(found)
    for key in ("prediction", "p_lower", "radius", "label"):
        assert torch.equal(getattr(back, key), getattr(cert, key)), key
    assert len(cert.to_dict()["certified_accuracy"]) == len(DEFAULT_RADII)
    path = plot_certified_accuracy({"m": cert}, tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ training
def test_gaussian_noise_training_is_the_loss_of_the_images_plus_sigma_times_the_generators_draw() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    images, target = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    loss, logits = GaussianNoiseTraining(0.4, generator=torch.Generator().manual_seed(3))(model, images, target)
    noise = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    expected = model(images + 0.4 * noise)
    assert torch.equal(logits, expected)
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(expected, target).item())
    nhwc = torch.rand(2, 3, 4, 4).to(memory_format=torch.channels_last)
    seen = []
    GaussianNoiseTraining(0.1)(lambda x: seen.append(x) or torch.zeros(2, 2), nhwc, torch.tensor([0, 1]))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        (lambda m: SmoothedClassifier(m, 2, 0.0), "sigma", "> 0"),
        (lambda m: SmoothedClassifier(m, 2, -0.5), "sigma", "> 0"),
        (lambda m: SmoothedClassifier(m, 2, math.nan), "sigma", "finite"),
        (lambda m: SmoothedClassifier(m, 2, 0.25, batch=0), "batch", ">= 1"),
        (lambda m: SmoothedClassifier(m, 1, 0.25), "num_classes", ">= 2"),
        (lambda m: SmoothedClassifier(m, 2, 0.25).certify(torch.zeros(1, 1, 1, 2), torch.zeros(1), 11, 10),
         "n0", "must be <= n = 10"),
        (lambda m: SmoothedClassifier(m, 2, 0.25).certify(torch.zeros(1, 1, 1, 2), torch.zeros(1), 0, 10),
         "n0", ">= 1"),
        (lambda m: SmoothedClassifier(m, 2, 0.25).certify(torch.zeros(1, 1, 1, 2), torch.zeros(1), 1, 10, alpha=1.0),
         "alpha", "(0, 1)"),
        (lambda m: SmoothedClassifier(m, 2, 0.25).predict(torch.zeros(1, 1, 1, 2), 10, alpha=0.0), "alpha", "> 0"),
        (lambda m: GaussianNoiseTraining(0.0), "sigma", "> 0"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_argument(call, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        call(Linear((1.0, 0.0), 0.0))
    assert info.value.field == field and fragment in info.value.message
