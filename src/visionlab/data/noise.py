"""ImageNet-C's three noise corruptions: their parameters, and their batched form for training augmentation.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" (ICLR
2019), define per severity 1-5, on pixels ``x`` in [0, 1], each value of an image independently:

* ``gaussian_noise``: ``x + N(0, σ²)``, ``σ = GAUSSIAN_NOISE_SCALES[s - 1]`` (pixel units);
* ``shot_noise``: ``Poisson(λ x) / λ``, ``λ = SHOT_NOISE_RATES[s - 1]`` (photons per unit of brightness: the fewer,
  the noisier);
* ``impulse_noise``: a share ``IMPULSE_NOISE_AMOUNTS[s - 1]`` of the values set to 0 or 1, half each (salt and
  pepper: scikit-image's ``random_noise(mode="s&p")``);

each clipped to [0, 1]. The values are those of imagecorruptions (Michaelis et al. 2019), the implementation of
ImageNet-C's corruptions that :mod:`visionlab.robustness.corruptions` evaluates with. They live here, on the floor
below both, because the training augmentation (:func:`noise_augment`, ``--augment noise=P``) uses them too: one
definition for the benchmark and the training against it.

Training on these corruptions makes the benchmark's three noise rows no longer held out: Hendrycks & Dietterich's
protocol trains on none of its corruptions, so a model trained with ``noise=P`` is compared with others on the
other 12 (its noise rows measure the augmentation, not generalization to unseen corruptions).
"""

from __future__ import annotations

import torch

__all__ = [
    "GAUSSIAN_NOISE_SCALES",
    "IMPULSE_NOISE_AMOUNTS",
    "NOISE_CORRUPTIONS",
    "SHOT_NOISE_RATES",
    "noise_augment",
]

NOISE_CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "impulse_noise")
# Standard deviation of the added Gaussian noise, pixel units, per severity 1-5.
GAUSSIAN_NOISE_SCALES: tuple[float, ...] = (0.08, 0.12, 0.18, 0.26, 0.38)
# Poisson rate per unit of pixel value (photon count of a white pixel), per severity 1-5.
SHOT_NOISE_RATES: tuple[float, ...] = (60.0, 25.0, 12.0, 5.0, 3.0)
# Share of values set to 0 or 1, per severity 1-5.
IMPULSE_NOISE_AMOUNTS: tuple[float, ...] = (0.03, 0.06, 0.09, 0.17, 0.27)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] (clipped first) to the nearest 8-bit value."""
    return x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def noise_augment(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """``images`` with, on a share ``probability`` of them, one of ImageNet-C's noise corruptions at a severity
    1-5, corruption and severity drawn uniformly per image; ``uint8`` in, ``uint8`` out (the corrupted pixels
    rounded to the nearest 8-bit value), a new tensor.

    Args:
        images: ``(B, C, H, W)`` ``uint8`` pixels, on the CPU.
        probability: the chance, per image, of a corruption; in [0, 1].
        generator: every random draw comes from it, in this order — ``chosen = rand(B) < probability``, the
            corruption ``randint(0, 3, (B,))`` (an index into :data:`NOISE_CORRUPTIONS`), the severity
            ``randint(1, 6, (B,))``; then, for the chosen images of each corruption in that order (in batch order,
            ``n`` of them, when ``n > 0``): Gaussian ``randn(n, C, H, W)``; shot ``poisson(λ x)`` of that shape;
            impulse ``rand(n, C, H, W) <= amount`` (the values hit), then ``rand(n, C, H, W) <= 0.5`` (those set
            to 1, the rest of the hit ones to 0). So the same generator state gives the same batch, and a run
            resumed with its generator's state sees the same noise.

    The arithmetic is in float32 on ``x = images / 255``. Costs a few element-wise passes over the chosen images.
    """
    b = images.shape[0]
    chosen = torch.rand(b, generator=generator) < probability
    kinds = torch.randint(0, len(NOISE_CORRUPTIONS), (b,), generator=generator)
    severities = torch.randint(1, 6, (b,), generator=generator)
    out = images.clone()
    for kind, name in enumerate(NOISE_CORRUPTIONS):
        index = torch.nonzero(chosen & (kinds == kind)).flatten()
        if index.numel():
            out[index] = _corrupt(images[index], name, severities[index] - 1, generator)
    return out


def _corrupt(images: torch.Tensor, name: str, level: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``images`` (uint8 ``(n, C, H, W)``) under the noise ``name``, image ``i`` at severity ``level[i] + 1``."""
    shape = images.shape
    if name == "impulse_noise":
        amount = torch.tensor(IMPULSE_NOISE_AMOUNTS)[level].view(-1, 1, 1, 1)
        hit = torch.rand(shape, generator=generator) <= amount
        salt = torch.rand(shape, generator=generator) <= 0.5
        return images.masked_fill(hit & salt, 255).masked_fill(hit & ~salt, 0)
    x = images.to(torch.float32).div_(255.0)
    if name == "gaussian_noise":
        scale = torch.tensor(GAUSSIAN_NOISE_SCALES)[level].view(-1, 1, 1, 1)
        return _quantize(x + scale * torch.randn(shape, generator=generator))
    rate = torch.tensor(SHOT_NOISE_RATES)[level].view(-1, 1, 1, 1)
    return _quantize(torch.poisson(x * rate, generator=generator) / rate)
