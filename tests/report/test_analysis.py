"""What the report computes from a model (``report/analysis.py``): confusion matrices and top-k counts checked by
hand on hand-made predictions and hand-made models, the messages in full, an empty split, submodule modes,
the PNG pixels and enlargement, and the saliency grids as the explain package renders them."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.explain import heatmap_overlay, image_grid, red_overlay, saliency
from visionlab.report import analyse, confusion_matrix, per_class_accuracy
from visionlab.report.analysis import Sample, _scale, predict, tensor_png


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


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture)


def test_confusion_matrix_messages_in_full() -> None:
    def raises(message: str):
        return pytest.raises(ValueError, match=f"^{re.escape(message)}$")

    with raises("expected two (N,) tensors, got (2,) and (1,)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
    with raises("expected two (N,) tensors, got (1, 2) and (1, 2)"):
        confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), 3)
    with raises("num_classes must be >= 1, got 0"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    with raises("predicted holds classes outside [0, 3): 0..3"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with raises("target holds classes outside [0, 3): -1..2"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, 2]), 3)
    assert confusion_matrix(torch.tensor([0]), torch.tensor([0]), 1).tolist() == [[1]]
    assert confusion_matrix(torch.tensor([2, 0]), torch.tensor([2, 2]), 3).tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert per_class_accuracy([[1, 3], [0, 0]]) == [(4, 1, 25.0), (0, 0, None)]


class Pixels(nn.Module):
    """Logits are the image's pixels (times a learnable 10), so each image says what the model predicts."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.inner = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flatten(1)) * self.scale


def _logit_images(ranks: list[list[int]]) -> torch.Tensor:
    """One (1, 1, K) image per row: class ranks[i][j] gets pixel 1 - j / K (so it is the (j+1)-th guess)."""
    k = len(ranks[0])
    images = torch.zeros(len(ranks), 1, 1, k)
    for i, order in enumerate(ranks):
        for j, c in enumerate(order):
            images[i, 0, 0, c] = 1 - j / k
    return images


def test_top5_counts_only_the_first_five_of_seven_classes() -> None:
    ranks = [[0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 0, 6], [6, 1, 2, 3, 4, 5, 0], [2, 3, 4, 5, 6, 0, 1]]
    labels = torch.tensor([0, 0, 0, 0])  # ranks of class 0: 1st, 6th, 7th, 6th
    model = Pixels()
    model.inner.eval()  # a submodule in its own mode
    found = analyse(model, TensorDataset(_logit_images(ranks), labels), list("abcdefg"), "cpu", num_images=2)
    assert model.training and not model.inner.training  # each submodule's mode restored
    assert found.n == 4 and found.top1 == 25.0 and found.top5 == 25.0
    assert found.class_names == list("abcdefg") and str(found.checkpoint) == "."
    assert [s.index for s in found.samples] == [0, 1] and [s.label for s in found.samples] == [0, 0]
    assert [c for c, _ in found.samples[1].top] == [1, 2, 3, 4, 5]  # the top 5 only
    assert found.samples[0].top[0][1] == pytest.approx(float(torch.softmax(_logit_images(ranks)[0, 0, 0] * 10, 0)[0]))
    labels = torch.tensor([4, 5, 1, 6])  # ranks: 5th, 5th, 2nd, 5th
    found = analyse(Pixels(), TensorDataset(_logit_images(ranks), labels), list("abcdefg"), "cpu", num_images=0)
    assert found.top1 == 0.0 and found.top5 == 100.0 and found.samples == [] and found.saliency_png is None
    predictions = predict(Pixels(), TensorDataset(_logit_images(ranks), labels), "cpu", batch_size=3, k=2)
    assert predictions.top.tolist() == [[0, 1], [1, 2], [6, 1], [2, 3]] and predictions.labels.tolist() == [4, 5, 1, 6]
    assert predictions.labels.dtype == torch.int64


def test_samples_and_saliency_grids_are_the_explain_renderings() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 1, 1, 28)
    labels = torch.tensor([int(images[i, 0, 0, :28].argmax()) for i in range(3)])
    model = Pixels()
    found = analyse(model, TensorDataset(images, labels), [str(k) for k in range(28)], "cpu", num_images=2)
    assert found.top1 == 100.0 and [s.correct for s in found.samples] == [True, True]
    assert _pixels(found.samples[0].png).shape == (3, 84)  # 28 px wide: enlarged 3 times
    assert found.samples[0].png == tensor_png(images[0], scale=3)
    maps = saliency(model, images[:2])
    assert found.saliency_png == tensor_png(image_grid(red_overlay(images[:2], maps)), scale=3)
    assert found.saliency_heatmap_png == tensor_png(image_grid(heatmap_overlay(images[:2], maps)), scale=3)
    assert Sample(0, 2, [(2, 0.9)], b"").correct and not Sample(0, 1, [(2, 0.9), (1, 0.1)], b"").correct


def test_tensor_png_pixels_and_enlargement() -> None:
    gray = torch.tensor([[[-0.5, 0.3, 0.9, 1.2]]])  # clamped, times 255, rounded: 0, 76.5 -> 76, 229.5 -> 230
    assert _pixels(tensor_png(gray)).tolist() == [[0, 76, 230, 255]]
    assert _pixels(tensor_png(gray, scale=2)).tolist() == [[0, 0, 76, 76, 230, 230, 255, 255]] * 2
    rgb = torch.zeros(3, 1, 2)
    rgb[0, 0, 0], rgb[1, 0, 1], rgb[2, 0, 1] = 1.0, 0.2, 0.4
    assert _pixels(tensor_png(rgb)).tolist() == [[[255, 0, 0], [0, 51, 102]]]
    with Image.open(io.BytesIO(tensor_png(gray, scale=0))) as picture:
        assert picture.size == (4, 1) and picture.mode == "L"
    with pytest.raises(ValueError, match=re.escape("expected a (C, H, W) image with C 1 or 3, got (2, 1, 4)") + "$"):
        tensor_png(torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=re.escape("got (1, 4)") + "$"):
        tensor_png(torch.zeros(1, 4))
    assert [_scale(s) for s in (4, 5, 17, 28, 42, 43, 84, 85, 200)] == [21, 16, 4, 3, 2, 1, 1, 1, 1]


def test_an_empty_split_is_analysed_as_zero_images() -> None:
    empty = TensorDataset(torch.zeros(0, 1, 1, 7), torch.zeros(0, dtype=torch.long))
    predictions = predict(Pixels(), empty, "cpu", k=3)
    assert (predictions.labels.shape, predictions.top.shape, predictions.probs.shape) == ((0,), (0, 3), (0, 3))
    assert predictions.labels.dtype == predictions.top.dtype == torch.int64 and predictions.probs.is_floating_point()
    found = analyse(Pixels(), empty, list("abcdefg"), "cpu")
    assert (found.n, found.top1, found.top5, found.samples) == (0, 0.0, 0.0, [])
    assert found.confusion == [[0] * 7] * 7


def test_tensor_png_is_written_optimized() -> None:
    ramp = torch.linspace(0, 1, 48 * 48).reshape(1, 48, 48)
    picture = Image.fromarray((ramp[0] * 255).round().to(torch.uint8).numpy())
    optimized, plain = io.BytesIO(), io.BytesIO()
    picture.save(optimized, format="PNG", optimize=True)
    picture.save(plain, format="PNG")
    assert optimized.getvalue() != plain.getvalue()  # so the comparison below can tell them apart
    assert tensor_png(ramp) == optimized.getvalue()


class Recording(Pixels):
    """:class:`Pixels` that records the size of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return super().forward(x)


def test_analyse_batches_and_cards() -> None:
    torch.manual_seed(0)
    images, labels = torch.rand(300, 1, 1, 7), torch.randint(0, 7, (300,))
    model = Recording()
    found = analyse(model, TensorDataset(images, labels), list("abcdefg"), "cpu")  # the defaults
    assert len(found.samples) == 20 and model.sizes == [256, 44, 20]  # predict's batches, then the 20 cards'
    model = Recording()
    found = analyse(model, TensorDataset(images[:30], labels[:30]), list("abcdefg"), "cpu", batch_size=8)
    assert len(found.samples) == 20 and model.sizes == [8, 8, 8, 6, 8, 8, 4]  # saliency in batches of 8 too
