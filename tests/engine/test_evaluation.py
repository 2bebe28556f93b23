"""``engine/evaluation.py``: ``evaluate`` in eval mode with every submodule's mode given back, in the asked
memory format, and test-time augmentation as the mean of the image's and its width mirror's logits (exact
losses of a hand-made model, builders.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionlab.engine import (
    evaluate,
)

from ..conftest import mixed_model, train_flags
from .builders import (
    AVERAGED,
    IMAGE,
    PLAIN,
    Corners,
    cross_entropy,
)

CPU = torch.device("cpu")


class _Recorder(nn.Module):
    """Logits from the first two pixels; records the mode and memory format of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.is_contiguous(memory_format=torch.channels_last)))
        return x.flatten(1)[:, :2]


def test_evaluate_restores_the_mode_and_feeds_the_asked_memory_format() -> None:
    images = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]], [[[0.0, 2.0], [0.0, 0.0]]]]).repeat(1, 2, 1, 1)
    loader = [(images, torch.tensor([0, 0]))]
    model = _Recorder()
    stats = evaluate(model, loader, CPU)
    assert model.training and model.seen == [(False, False)]  # evaluated in eval mode, train mode restored
    assert (stats["top1"], stats["n"]) == (50.0, 2)
    model.eval()
    evaluate(model, loader, CPU, channels_last=True)
    assert not model.training and model.seen[-1] == (False, True)


def test_evaluate_gives_a_mixed_model_back_as_it_was() -> None:
    model = mixed_model()
    before = train_flags(model)
    loader = DataLoader(TensorDataset(torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])), batch_size=4)
    evaluate(model, loader, torch.device("cpu"))
    assert train_flags(model) == before  # was: every submodule set to the top-level flag (the backbone to training)


@pytest.mark.parametrize("target", [0, 1, 2])
def test_tta_averages_the_logits_of_the_image_and_its_width_mirror(target: int) -> None:
    """The loss for each target pins softmax(averaged logits), i.e. the averaged logits up to the constant
    cross-entropy cannot see; top-1 tells the averaged prediction (class 2) from the plain one (class 0)."""
    model, loader, cpu = Corners(), [(IMAGE, torch.tensor([target]))], torch.device("cpu")
    tta = evaluate(model, loader, cpu, tta=True)
    assert tta["loss"] == pytest.approx(cross_entropy(AVERAGED, target), rel=1e-6)
    assert (tta["top1"], tta["top5"], tta["n"]) == (100.0 if target == 2 else 0.0, 100.0, 1)
    plain = evaluate(model, loader, cpu, tta=False)
    assert plain["loss"] == pytest.approx(cross_entropy(PLAIN, target), rel=1e-6)
    assert plain["top1"] == (100.0 if target == 0 else 0.0)
