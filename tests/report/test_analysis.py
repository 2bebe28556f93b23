"""What the report computes from a model: counts checked by hand on hand-made predictions and a hand-made model."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.report import analyse, confusion_matrix, per_class_accuracy
from visionlab.report.analysis import tensor_png


def test_confusion_matrix_counts_known_predictions() -> None:
    # true:      0  0  0  1  1  2  2  2  2
    # predicted: 0  0  1  1  2  2  2  0  2
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 2])
    counts = confusion_matrix(predicted, target, 4)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [
        [2, 1, 0, 0],  # class 0: two right, one taken for class 1
        [0, 1, 1, 0],
        [1, 0, 3, 0],
        [0, 0, 0, 0],  # class 3 has no examples and is never predicted
    ]
    assert int(counts.sum()) == 9 and int(counts.trace()) == 6
    assert per_class_accuracy(counts) == [(3, 2, pytest.approx(200 / 3)), (2, 1, 50.0), (4, 3, 75.0), (0, 0, None)]
    assert per_class_accuracy(counts.tolist()) == per_class_accuracy(counts)


def test_confusion_matrix_refuses_classes_out_of_range_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"predicted holds classes outside \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="target holds classes outside"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, 1]), 3)
    with pytest.raises(ValueError, match="two"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
    assert confusion_matrix(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 2).tolist() == [
        [0, 0],
        [0, 0],
    ]


class Brightness(nn.Module):
    """Predicts class round(mean pixel * 3) of 4 (a smooth function of the pixels, so saliency has gradients)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x.mean(dim=(1, 2, 3)).unsqueeze(1) * self.scale
        return -((torch.arange(4.0) - centre) ** 2) * 10


def test_analyse_counts_a_hand_made_model() -> None:
    brightness = torch.tensor([0.0, 0.34, 0.66, 1.0, 0.0, 1.0])  # predicted classes 0, 1, 2, 3, 0, 3
    labels = torch.tensor([0, 1, 2, 3, 1, 2])  # the last two are wrong
    images = brightness.view(6, 1, 1, 1).expand(6, 1, 4, 4).clone()
    model = Brightness().train()
    found = analyse(model, TensorDataset(images, labels), ["a", "b", "c", "d"], "cpu", batch_size=4, num_images=5)

    assert model.training  # left in the mode it was in
    assert found.n == 6 and found.top1 == pytest.approx(400 / 6)
    assert found.top5 == 100.0  # 4 classes: every label is in the top 4
    assert found.confusion == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert [s.index for s in found.samples] == [0, 1, 2, 3, 4]
    assert [s.correct for s in found.samples] == [True, True, True, True, False]
    assert [c for c, _ in found.samples[4].top] == [0, 1, 2, 3]  # nearest class first
    assert sum(p for _, p in found.samples[0].top) == pytest.approx(1.0)
    with Image.open(io.BytesIO(found.samples[0].png)) as card:
        assert card.size == (84, 84)  # 4-px images enlarged 21 times
    for png in (found.saliency_png, found.saliency_heatmap_png):
        with Image.open(io.BytesIO(png)) as grid:
            assert grid.format == "PNG" and grid.width > 84


def test_analyse_without_saliency_and_png_checks() -> None:
    images, labels = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    found = analyse(Brightness(), TensorDataset(images, labels), list("abcd"), "cpu", with_saliency=False)
    assert found.saliency_png is None and len(found.samples) == 3
    with Image.open(io.BytesIO(tensor_png(images[0]))) as picture:
        assert picture.mode == "RGB" and picture.size == (8, 8)
    with pytest.raises(ValueError, match="C 1 or 3"):
        tensor_png(torch.rand(2, 8, 8))
