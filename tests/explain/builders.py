"""Builders shared by the tests of the sanity checks and faithfulness curves (tests/explain): a small conv net in
a mixed state (batch norm training, a frozen parameter, gradients already there) and the snapshot that tells
whether an analysis changed it, and a model that is a known linear function of the pixels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def mixed_state_net(channels: int = 1, size: int = 8, classes: int = 3) -> nn.Sequential:
    """Conv -> batch norm -> ReLU -> linear, its running statistics moved off their defaults, left in training
    mode with its linear layer in eval mode, the conv bias frozen and every trainable parameter holding a ``.grad``:
    the state an analysis must give back untouched."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * size * size, classes),
    )  # fmt: skip
    with torch.no_grad():
        model(torch.rand(8, channels, size, size))  # non-trivial running statistics
    model[0].bias.requires_grad_(False)
    model[4].eval()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 0.5)
    return model


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything an analysis must leave as it was: state (parameters and buffers), flags, ``.grad``s."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])
    assert after["training"] == before["training"] and after["requires_grad"] == before["requires_grad"]
    for a, b in zip(after["grad"], before["grad"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


class LinearLogit(nn.Module):
    """Two logits ``[w . x + b, 0]``: the probability of class 0 is ``sigmoid(w . x + b)``, so the effect of
    changing any set of pixels is known by hand."""

    def __init__(self, weight: torch.Tensor, bias: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.weight).flatten(1).sum(dim=1) + self.bias
        return torch.stack([z, torch.zeros_like(z)], dim=1)
