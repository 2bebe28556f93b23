"""What the report computes from a model itself: predictions over the validation split (top-1/top-5, per-class
accuracy, the confusion matrix), the top-5 of the first images, and saliency maps of those images.

These are cheap (one forward pass over the split, one backward pass over a few images), so the report runs them
on every report rather than asking for another command first. The results are plain numbers, lists and PNG
bytes (:class:`ModelAnalysis`), so the page is built without torch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from visionlab.engine import make_loader
from visionlab.explain import heatmap_overlay, image_grid, red_overlay, saliency
from visionlab.runtime import eval_mode

__all__ = ["ModelAnalysis", "Sample", "analyse", "confusion_matrix", "per_class_accuracy", "predict", "tensor_png"]


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``counts[t, p]``: how many examples of true class ``t`` were predicted as class ``p``.

    Args:
        predicted: ``(N,)`` predicted class indices in ``[0, num_classes)``.
        target: ``(N,)`` true class indices in ``[0, num_classes)``.
        num_classes: ``K``.

    Returns an ``int64`` ``(K, K)`` tensor (rows: true class, columns: predicted class); its diagonal holds the
    correct predictions and its total is ``N``. Example: ``confusion_matrix(tensor([0, 1, 1]), tensor([0, 0, 1]),
    2)`` is ``[[1, 1], [0, 1]]``.
    """
    if predicted.dim() != 1 or predicted.shape != target.shape:
        raise ValueError(f"expected two (N,) tensors, got {tuple(predicted.shape)} and {tuple(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, values in (("predicted", predicted), ("target", target)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(f"{name} holds classes outside [0, {num_classes}): {values.min()}..{values.max()}")
    flat = target.long().cpu() * num_classes + predicted.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(counts: Tensor | Sequence[Sequence[int]]) -> list[tuple[int, int, float | None]]:
    """``(examples, correct, accuracy %)`` per true class of a confusion matrix; the accuracy is None for a class
    without examples."""
    counts = torch.as_tensor(counts)
    rows = []
    for k in range(counts.shape[0]):
        n, correct = int(counts[k].sum()), int(counts[k, k])
        rows.append((n, correct, 100.0 * correct / n if n else None))
    return rows


@dataclass
class Predictions:
    """The top-k classes of every example: ``labels (N,)``, ``top (N, k)`` class indices best first, ``probs
    (N, k)`` their softmax probabilities."""

    labels: Tensor
    top: Tensor
    probs: Tensor


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, device: torch.device | str, *, batch_size: int = 256, k: int = 5
) -> Predictions:
    """Top-``k`` predictions of ``model`` (pixels in [0, 1] in, logits out) over ``dataset`` in order, in eval
    mode; every submodule's mode is restored afterwards."""
    device = torch.device(device)
    labels, top, probs = [], [], []
    with eval_mode(model):
        for images, target in make_loader(dataset, batch_size, train=False, workers=0, device=device):
            p = model(images.to(device)).float().softmax(dim=1)
            best = p.topk(min(k, p.shape[1]), dim=1)
            labels.append(target.cpu())
            top.append(best.indices.cpu())
            probs.append(best.values.cpu())
    if not labels:  # an empty split: no rows, k columns (so that ``top[:, 0]`` is an empty column, not an error)
        return Predictions(torch.zeros(0, dtype=torch.long), torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k))
    return Predictions(torch.cat(labels).long(), torch.cat(top), torch.cat(probs))


@dataclass
class Sample:
    """One validation image and the model's top-5 for it: ``index`` in the split, true ``label``, ``top`` as
    ``[(class index, probability)]`` best first, ``png`` the image."""

    index: int
    label: int
    top: list[tuple[int, float]]
    png: bytes

    @property
    def correct(self) -> bool:
        return self.top[0][0] == self.label


@dataclass
class ModelAnalysis:
    """What :func:`analyse` found for one checkpoint (numbers and PNG bytes, no tensors).

    Attributes:
        checkpoint: the file evaluated.
        class_names: one name per class index.
        n, top1, top5: validation examples evaluated, and their top-1 / top-5 accuracy (%).
        confusion: ``confusion[t][p]`` counts (see :func:`confusion_matrix`).
        samples: the first validation images with their top-5.
        saliency_png, saliency_heatmap_png: saliency of the samples (red overlay, heat map; 10 per row), or None
            when not computed.
    """

    checkpoint: Path
    class_names: list[str]
    n: int
    top1: float
    top5: float
    confusion: list[list[int]]
    samples: list[Sample]
    saliency_png: bytes | None = None
    saliency_heatmap_png: bytes | None = None


def analyse(
    model: nn.Module,
    dataset: Dataset,
    class_names: Sequence[str],
    device: torch.device | str,
    *,
    checkpoint: str | Path = "",
    batch_size: int = 256,
    num_images: int = 20,
    with_saliency: bool = True,
) -> ModelAnalysis:
    """Evaluate ``model`` on ``dataset`` (the validation split, pixels in [0, 1]) for the report.

    Args:
        model: the classifier, on ``device``.
        dataset: ``(image, label)`` pairs; evaluated in order, all of them (cut it beforehand to limit).
        class_names: one per class the model predicts.
        checkpoint: the file the model came from (shown in the report).
        batch_size: examples per forward pass.
        num_images: how many of the first images get a top-5 card (and a saliency map).
        with_saliency: compute the saliency maps of those images (vanilla gradient of the predicted class,
            :func:`visionlab.explain.saliency`).
    """
    predictions = predict(model, dataset, device, batch_size=batch_size)
    k = len(class_names)
    hits = predictions.top == predictions.labels.unsqueeze(1)
    n = len(predictions.labels)
    counts = confusion_matrix(predictions.top[:, 0], predictions.labels, k)
    m = min(num_images, n)
    images = torch.stack([dataset[i][0] for i in range(m)]) if m else torch.zeros(0)
    samples = [
        Sample(
            index=i,
            label=int(predictions.labels[i]),
            png=tensor_png(images[i], scale=_scale(images.shape[-1])),
            top=[(int(c), float(p)) for c, p in zip(predictions.top[i], predictions.probs[i], strict=True)],
        )
        for i in range(m)
    ]
    analysis = ModelAnalysis(
        checkpoint=Path(checkpoint), class_names=list(class_names), n=n,
        top1=100.0 * float(hits[:, 0].float().mean()) if n else 0.0,
        top5=100.0 * float(hits[:, :5].any(dim=1).float().mean()) if n else 0.0,
        confusion=counts.tolist(), samples=samples,
    )  # fmt: skip
    if with_saliency and m:
        maps = saliency(model, images.to(device), generator=torch.Generator().manual_seed(0), batch_size=batch_size)
        maps, scale = maps.cpu(), _scale(images.shape[-1])
        analysis.saliency_png = tensor_png(image_grid(red_overlay(images, maps)), scale=scale)
        analysis.saliency_heatmap_png = tensor_png(image_grid(heatmap_overlay(images, maps)), scale=scale)
    return analysis


def tensor_png(image: Tensor, scale: int = 1) -> bytes:
    """A ``(C, H, W)`` image (``C`` 1 or 3, pixels in [0, 1]) as PNG bytes, enlarged ``scale`` times with nearest
    neighbours (small images stay sharp in any browser)."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with C 1 or 3, got {tuple(image.shape)}")
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _scale(side: int) -> int:
    """Enlargement that brings small images (28-px Fashion-MNIST) to about 84 px; larger ones stay as they are."""
    return max(1, 84 // side)
