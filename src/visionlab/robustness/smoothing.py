"""Randomized smoothing: certified L2 robustness (Cohen, Rosenfeld & Kolter 2019, "Certified Adversarial Robustness
via Randomized Smoothing", ICML).

The smoothed classifier ``g(x) = argmax_c P(f(x + ε) = c)``, ``ε ~ N(0, σ² I)``, of any base classifier ``f`` is
robust around ``x`` within the L2 radius ``σ Φ⁻¹(p_A)``, where ``p_A`` is the probability of its top class (the
paper's Theorem 1, in the form with ``p_B = 1 - p_A``). ``p_A`` is not known; it is estimated by Monte Carlo and
replaced by a lower confidence bound, so a certificate holds with probability at least ``1 - alpha`` over the
sampling. The two algorithms of the paper (its Pseudocode), with its defaults:

* :meth:`SmoothedClassifier.predict` (PREDICT): ``n`` noisy samples, the two most frequent classes ``A``, ``B``;
  ``A`` when the two-sided binomial test of ``n_A`` successes in ``n_A + n_B`` trials at ``p = 1/2`` rejects at
  level ``alpha``, else abstain. The probability of returning a class other than ``g(x)`` is at most ``alpha``.
* :meth:`SmoothedClassifier.certify` (CERTIFY): ``n0`` samples select the class ``A``, ``n`` fresh samples count
  it; ``p̲_A`` is the one-sided Clopper–Pearson lower bound at confidence ``1 - alpha``, the radius
  ``σ Φ⁻¹(p̲_A)``; abstain when ``p̲_A <= 1/2`` (no radius can be certified).

Units: the noise is added to pixels in [0, 1] (every visionlab model normalizes inside), so ``σ`` is in pixel
units, as Cohen et al.'s σ is on inputs in [0, 1]; the radius is an L2 distance in the same units. The noisy
inputs are not clipped to [0, 1] (neither are Cohen et al.'s).

Sampling is batched across images: the noisy copies of several images go through the network in one forward
pass of at most ``batch`` rows (default :func:`default_batch`: 128 on the CPU, 1000 on a GPU). The noise of image
``i`` in one phase (selection, estimation or prediction) is its own stream, drawn from a generator seeded by
``(seed, phase, i)`` in blocks whose size depends only on the image shape (:func:`noise_block`), never on
``batch``: results are the same for any ``batch`` and any split of the images into calls (pass ``first_index``),
bit for bit on one device.

Statistics: :func:`clopper_pearson_lower` and the binomial test come from :mod:`scipy.stats`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visionlab.checks import check_integer, check_number
from visionlab.errors import ConfigError
from visionlab.runtime import channels_last_copy, eval_mode

__all__ = [
    "ABSTAIN",
    "DEFAULT_RADII",
    "Certification",
    "GaussianNoiseTraining",
    "SmoothedClassifier",
    "clopper_pearson_lower",
    "default_batch",
    "noise_block",
    "plot_certified_accuracy",
]

ABSTAIN = -1  # the prediction of an image the smoothed classifier abstains on
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # L2 radii of the certified-accuracy table (pixel units)
_BLOCK_VALUES = 1 << 20  # noise values drawn per generator call (about 4 MB of float32)
_PHASES = {"select": 0, "estimate": 1, "predict": 2}


CPU_BATCH = 128
"""Noisy copies per forward pass on the CPU by default (:func:`default_batch`)."""
DEVICE_BATCH = 1000
"""Noisy copies per forward pass on a GPU by default (Cohen et al.'s ``--batch``)."""


def default_batch(device: torch.device | str) -> int:
    """The default rows per forward pass on ``device``: :data:`CPU_BATCH` on the CPU, :data:`DEVICE_BATCH` elsewhere.

    On the CPU a smaller pass keeps the activations in cache: on 2 AVX-512 cores SimpleNet (1x28x28, channels-last)
    ran 18.5k noisy copies/s at 128 rows against 11.2k at 1000, and CERTIFY (n = 10,000) 2.0-2.3 images/s against
    1.1. A GPU wants large passes to fill its cores. The results do not depend on it (the module docstring).
    """
    return CPU_BATCH if torch.device(device).type == "cpu" else DEVICE_BATCH


def noise_block(image_shape: Sequence[int]) -> int:
    """Noise samples drawn per generator call for images of ``image_shape`` (C, H, W): about 2^20 values, at least
    one sample. The block depends on the shape only, so the noise stream of an image is the same whatever the
    forward batch."""
    return max(1, _BLOCK_VALUES // math.prod(image_shape))


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper–Pearson lower confidence bound at level ``1 - alpha`` of a binomial proportion:
    ``Beta(alpha; k, n - k + 1)`` quantile, 0 when ``k = 0`` (statsmodels' ``proportion_confint(k, n, 2 alpha,
    "beta")[0]``, which Cohen et al.'s code uses)."""
    from scipy.stats import beta

    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def _stream_seed(seed: int, phase: str, index: int) -> int:
    """A 63-bit generator seed for the noise of image ``index`` in ``phase``: a hash, so that neighbouring
    images, phases and seeds get unrelated streams."""
    digest = hashlib.blake2b(f"{seed}:{_PHASES[phase]}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class Certification:
    """What :meth:`SmoothedClassifier.certify` found, one entry per image.

    Attributes:
        prediction: ``(N,)`` int64, the certified class, or :data:`ABSTAIN` (-1).
        p_lower: ``(N,)`` float64, the Clopper–Pearson lower bound p̲_A of the selected class's probability.
        radius: ``(N,)`` float64, the certified L2 radius ``σ Φ⁻¹(p̲_A)`` in pixel units; 0 where it abstains.
        label: ``(N,)`` int64, the true classes.
        sigma, n0, n, alpha: the settings it ran with.
    """

    prediction: torch.Tensor
    p_lower: torch.Tensor
    radius: torch.Tensor
    label: torch.Tensor
    sigma: float
    n0: int
    n: int
    alpha: float

    @property
    def correct(self) -> torch.Tensor:
        """``(N,)`` bool: certified and the true class (an abstention is never correct)."""
        return self.prediction == self.label

    def certified_accuracy(self, radii: Sequence[float] = DEFAULT_RADII) -> list[float]:
        """Per radius ``r``, the share (%) of images certified correct with a radius ``>= r`` (Cohen et al.'s
        "approximate certified test accuracy"; at ``r = 0`` the smoothed classifier's accuracy, abstentions
        counted wrong)."""
        n = max(1, self.label.numel())
        return [100.0 * float((self.correct & (self.radius >= r)).sum()) / n for r in radii]

    @staticmethod
    def concat(parts: Sequence[Certification]) -> Certification:
        """The certification of several calls' images, in order (their settings must be the same)."""
        first = parts[0]
        return Certification(
            *(torch.cat([getattr(p, k) for p in parts]) for k in ("prediction", "p_lower", "radius", "label")),
            sigma=first.sigma, n0=first.n0, n=first.n, alpha=first.alpha,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Certification:
        """Inverse of :meth:`to_dict` (e.g. ``certify.json`` read back by the report)."""
        rows = values["images_detail"]

        def column(key: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([r[key] for r in rows], dtype=dtype)

        return cls(
            column("prediction", torch.long), column("p_lower", torch.float64), column("radius", torch.float64),
            column("label", torch.long), sigma=float(values["sigma"]), n0=int(values["n0"]), n=int(values["n"]),
            alpha=float(values["alpha"]),
        )  # fmt: skip

    def to_dict(self, radii: Sequence[float] = DEFAULT_RADII) -> dict[str, Any]:
        """JSON-ready: the settings, the certified accuracy (%) at ``radii``, and the per-image rows
        ``{"index", "label", "prediction", "p_lower", "radius", "correct"}``."""
        accuracy = self.certified_accuracy(radii)
        rows = [
            {"index": i, "label": int(y), "prediction": int(p), "p_lower": float(q), "radius": float(r),
             "correct": bool(p == y)}
            for i, (y, p, q, r) in enumerate(zip(self.label.tolist(), self.prediction.tolist(),
                                                 self.p_lower.tolist(), self.radius.tolist(), strict=True))
        ]  # fmt: skip
        abstained = int((self.prediction == ABSTAIN).sum())
        return {
            "sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha, "images": len(rows),
            "abstained": abstained,
            "certified_accuracy": [{"radius": float(r), "accuracy": a} for r, a in zip(radii, accuracy, strict=True)],
            "images_detail": rows,
        }  # fmt: skip


class SmoothedClassifier:
    """The Gaussian-smoothed version of ``model`` (Cohen et al. 2019): :meth:`predict` and :meth:`certify`.

    Args:
        model: the base classifier, any ``nn.Module`` taking pixels in [0, 1] (a visionlab model normalizes
            inside) and returning ``(N, num_classes)`` logits; run in eval mode without gradients, every
            submodule's mode given back afterwards.
        num_classes: the number of classes of its output.
        sigma: the noise standard deviation, > 0, in pixel units (Cohen et al. use 0.12 to 1.0 on [0, 1] inputs).
        batch: noisy copies per forward pass, split across images as needed (default: :func:`default_batch` of
            the images' device, 128 on the CPU, 1000 on a GPU).
        seed: seeds every noise stream (default 0); results do not depend on ``batch``.

    Example::

        smoothed = SmoothedClassifier(model, 10, sigma=0.25)
        cert = smoothed.certify(images, labels, n0=100, n=10_000, alpha=0.001)
        cert.certified_accuracy([0.0, 0.5, 1.0])  # % certified correct within each L2 radius
    """

    def __init__(
        self, model: nn.Module, num_classes: int, sigma: float, *, batch: int | None = None, seed: int = 0
    ) -> None:
        self.model = model
        self.num_classes = check_integer(num_classes, "num_classes", minimum=2)
        self.sigma = float(check_number(sigma, "sigma", inclusive=False, unit="pixel units"))
        self.batch = check_integer(batch, "batch", minimum=1, optional=True)
        self.seed = check_integer(seed, "seed", minimum=0)

    def __repr__(self) -> str:
        return f"SmoothedClassifier(sigma={self.sigma:g}, batch={self.batch}, seed={self.seed})"

    def counts(self, images: torch.Tensor, num: int, *, phase: str = "estimate", first_index: int = 0) -> torch.Tensor:
        """``(N, num_classes)`` int64: how often the base classifier predicts each class on ``num`` noisy copies of
        each image of ``images`` ``(N, C, H, W)``. ``phase`` (``"select"``, ``"estimate"`` or ``"predict"``) and
        ``first_index + i`` pick image ``i``'s noise stream."""
        check_integer(num, "num", minimum=1)
        if phase not in _PHASES:
            raise ConfigError(f"must be one of {', '.join(_PHASES)}, got {phase!r}", field="phase")
        counts = torch.zeros(images.shape[0] * self.num_classes, dtype=torch.long, device=images.device)
        fast = channels_last_copy(self.model)  # NHWC: ~3x faster convolutions and pooling on oneDNN
        with eval_mode(fast), torch.no_grad():
            for rows, noisy in self._noisy_batches(images, num, phase, first_index):
                predicted = fast(noisy.contiguous(memory_format=torch.channels_last)).argmax(1)
                counts += torch.bincount(rows * self.num_classes + predicted, minlength=counts.numel())
        return counts.view(images.shape[0], self.num_classes)

    def _noisy_batches(
        self, images: torch.Tensor, num: int, phase: str, first_index: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(image rows, noisy copies)`` of at most ``batch`` rows: the ``num`` copies of image 0, then of image 1,
        ... each image's noise drawn in blocks of :func:`noise_block` samples from its own generator. The buffer
        is reused: each yielded pair is valid until the next is asked for."""
        shape, device = tuple(images.shape[1:]), images.device
        block, batch = noise_block(shape), self.batch or default_batch(device)
        buffer = torch.empty((batch, *shape), dtype=images.dtype, device=device)
        rows = torch.empty(batch, dtype=torch.long, device=device)
        fill = 0
        for i in range(images.shape[0]):
            generator = torch.Generator(device=device).manual_seed(_stream_seed(self.seed, phase, first_index + i))
            for start in range(0, num, block):
                noise = torch.randn((min(block, num - start), *shape), generator=generator, device=device,
                                    dtype=images.dtype)  # fmt: skip
                taken = 0
                while taken < noise.shape[0]:
                    m = min(noise.shape[0] - taken, batch - fill)
                    torch.add(images[i], noise[taken : taken + m], alpha=self.sigma, out=buffer[fill : fill + m])
                    rows[fill : fill + m] = i
                    fill, taken = fill + m, taken + m
                    if fill == batch:
                        yield rows, buffer
                        fill = 0
        if fill:
            yield rows[:fill], buffer[:fill]

    def predict(self, images: torch.Tensor, n: int = 100_000, alpha: float = 0.001, *, first_index: int = 0
                ) -> torch.Tensor:  # fmt: skip
        """PREDICT: ``(N,)`` int64, the smoothed classifier's class of each image, or :data:`ABSTAIN` where the
        two-sided binomial test of the top two counts does not reject ``p = 1/2`` at level ``alpha``.

        Args:
            images: ``(N, C, H, W)`` pixels in [0, 1] on the model's device.
            n: noisy samples per image (Cohen et al.: 100,000), >= 1.
            alpha: the test's level in (0, 1): a wrong class is returned with probability at most ``alpha``.
            first_index: the index of ``images[0]`` in the whole set (its noise stream).
        """
        from scipy.stats import binomtest

        _check_alpha(alpha)
        counts = self.counts(images, n, phase="predict", first_index=first_index).cpu()
        top = counts.topk(2, dim=1)  # a tie of the two gives the p-value 1: abstain, whichever comes first
        result = torch.full((images.shape[0],), ABSTAIN, dtype=torch.long)
        for i, ((n_a, n_b), (class_a, _)) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
            if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
                result[i] = class_a
        return result

    def certify(
        self, images: torch.Tensor, labels: torch.Tensor, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
        *, first_index: int = 0,
    ) -> Certification:  # fmt: skip
        """CERTIFY each image: the class the ``n0`` selection samples vote for, the Clopper–Pearson lower bound
        p̲_A of its probability from ``n`` further samples at confidence ``1 - alpha``, and the certified L2
        radius ``σ Φ⁻¹(p̲_A)``; abstain (radius 0) where ``p̲_A <= 1/2``.

        Args:
            images: ``(N, C, H, W)`` pixels in [0, 1] on the model's device.
            labels: ``(N,)`` the true classes (for :attr:`Certification.correct`).
            n0: selection samples per image (Cohen et al.: 100), >= 1.
            n: estimation samples per image (Cohen et al.: 100,000), >= n0.
            alpha: in (0, 1): each certificate is wrong with probability at most ``alpha``.
            first_index: the index of ``images[0]`` in the whole set (its noise streams).
        """
        from scipy.stats import norm

        check_integer(n0, "n0", minimum=1)
        check_integer(n, "n", minimum=1)
        if n0 > n:
            raise ConfigError(f"must be <= n = {n} (selection takes fewer samples than estimation), got {n0}",
                              field="n0")  # fmt: skip
        _check_alpha(alpha)
        selected = self.counts(images, n0, phase="select", first_index=first_index).argmax(1)
        counts = self.counts(images, n, phase="estimate", first_index=first_index)
        n_a = counts.gather(1, selected[:, None])[:, 0].cpu().tolist()
        p_lower = torch.tensor([clopper_pearson_lower(k, n, alpha) for k in n_a], dtype=torch.float64)
        certified = p_lower > 0.5
        radius = torch.where(certified, self.sigma * torch.from_numpy(norm.ppf(p_lower.numpy())), 0.0)
        prediction = torch.where(certified, selected.cpu(), ABSTAIN)
        return Certification(prediction, p_lower, radius.to(torch.float64), labels.detach().cpu().long(),
                             self.sigma, n0, n, float(alpha))  # fmt: skip


@dataclass
class GaussianNoiseTraining:
    """Gaussian data augmentation, the training Cohen et al. (2019) pair with randomized smoothing: the base
    classifier learns on ``x + N(0, sigma² I)``, the noise it is smoothed with, so that it classifies noisy images
    well. A drop-in replacement for :class:`visionlab.engine.ClassificationTask` (``visionlab train
    --noise-sigma S``).

    Every training image gets fresh noise at every step, in pixel units, not clipped to [0, 1] (as Cohen et al.:
    the smoothed classifier sees unclipped noisy inputs, and so should its base classifier). Returned logits are
    those of the noisy images, so the trainer's running top-1 is the accuracy under noise.

    Args:
        sigma: the noise standard deviation, > 0, pixel units (train at the σ you will certify with).
        criterion: training loss on logits (e.g. ``nn.CrossEntropyLoss(label_smoothing=0.1)``).
        generator: RNG of the noise; default the global RNG of the images' device, which checkpoints capture, so
            a resumed run draws the same noise as one never stopped.
    """

    sigma: float
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        self.sigma = float(check_number(self.sigma, "sigma", inclusive=False, unit="pixel units"))

    def __call__(
        self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.empty_like(images).normal_(generator=self.generator)  # the images' memory format kept
        logits = model(images + self.sigma * noise)
        return self.criterion(logits, target), logits


def _check_alpha(alpha: Any) -> None:
    check_number(alpha, "alpha", inclusive=False)
    if alpha >= 1:
        raise ConfigError(f"must be a number in (0, 1), got {alpha!r}", field="alpha")


def plot_certified_accuracy(curves: dict[str, Certification], out: Any, *, max_radius: float | None = None) -> Any:
    """PNG of certified accuracy (%) against L2 radius, one step curve per label of ``curves`` (Cohen et al.'s
    Figure 7), written to ``out`` (parent folders created); returns its path. The curve runs from 0 to
    ``max_radius`` (default: the largest radius certified, at least σ)."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, cert) in enumerate(curves.items()):
        largest = float(cert.radius.max()) if cert.radius.numel() else 0.0
        top = max_radius if max_radius is not None else max(cert.sigma, largest)
        radii = torch.linspace(0.0, top, 200).tolist()
        ax.plot(radii, cert.certified_accuracy(radii), color=f"C{i}",
                label=f"{label} (σ = {cert.sigma:g}, n = {cert.n})")  # fmt: skip
    ax.set_xlabel("L2 radius (pixel units)")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
