"""Tiny pixel-space models for the robustness tests (float64, so equalities hold to ~1e-15)."""

from __future__ import annotations

import torch
from torch import nn

from visionlab.models import ImageClassifier, Normalize

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def tiny_model(
    channels: int = 3, classes: int = 5, size: int = 6, *, bn: bool = False, dropout: bool = False, seed: int = 0
) -> ImageClassifier:
    """Normalize -> conv 3x3 (4 maps) [-> BatchNorm] -> tanh [-> dropout] -> linear, float64, eval mode.
    Tanh (not ReLU) keeps input gradients away from exact zeros, so signs are stable."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(channels, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers.append(nn.Tanh())
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers += [nn.Flatten(), nn.Linear(4 * size * size, classes)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.8 if p.dim() > 1 else 0.1))
    model = ImageClassifier(Normalize(MEAN[:channels], STD[:channels]), net).double()
    return model.eval()


def batch(n: int = 8, channels: int = 3, size: int = 6, seed: int = 1, lo: float = 0.0, hi: float = 1.0):
    """``n`` float64 images with pixels uniform in [lo, hi]."""
    gen = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, channels, size, size, generator=gen, dtype=torch.float64)


def predicted(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's clean predictions, used as labels so that clean accuracy is 100%."""
    with torch.no_grad():
        return model(images).argmax(dim=1)


class Forwards(nn.Module):
    """``model`` that records the batch size of every forward in ``sizes``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.model(x)
