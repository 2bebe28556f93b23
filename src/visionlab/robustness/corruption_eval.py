"""Accuracy under common corruptions: per corruption × severity, the mean, and ImageNet-C's corruption error.

Hendrycks & Dietterich (ICLR 2019) summarise a model ``f`` by its error ``E^f_{s,c}`` (%) under corruption ``c``
at severity ``s``, normalised by a baseline model's (AlexNet for ImageNet-C; here any model, ``--baseline``):

* corruption error ``CE_c = Σ_s E^f_{s,c} / Σ_s E^base_{s,c}`` (× 100: 100 is as bad as the baseline) and the
  mean corruption error ``mCE = mean_c CE_c``;
* relative corruption error ``RelCE_c = Σ_s (E^f_{s,c} - E^f_clean) / Σ_s (E^base_{s,c} - E^base_clean)`` (× 100),
  the accuracy *lost* to the corruption relative to the baseline's loss, and ``relative mCE = mean_c RelCE_c``.

The corrupted images are made on the fly (:mod:`visionlab.robustness.corruptions`), image ``i`` of the data (its
position in the order the loader gives) from the seed ``(seed, i, corruption, severity)``: the same images for
every model, batch size and number of workers. :func:`corruption_accuracies` feeds each corrupted batch to several
models, so a comparison corrupts the images once.

Corrupting is the cost (~5 ms an image per corruption at 28 px, on the CPU; a model's forward pass is far cheaper),
so for a map-style dataset — files or held in memory — it is spread over ``workers`` processes
(:func:`corrupted_batches`): every batch of every corruption × severity is one task, run by a DataLoader's workers
in order and ahead of the models' forward passes in this process, which therefore overlap the making of the next
batches (across corruptions too: the workers are started once). The images do not depend on ``workers`` or the
batch size, since every image is corrupted from its own seed.

No cache of the corrupted images: a corrupted image is a float image, not a multiple of 1/255 (12 of the 15
corruptions; only impulse noise, pixelate and JPEG give 8-bit values), so an exact cache would hold float32 pixels —
15 × 5 × 10,000 Fashion-MNIST images are 2.4 GB, CIFAR-10's 9.2 GB — and a uint8 one would change the accuracies.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from visionlab.checks import check_integer
from visionlab.errors import ConfigError
from visionlab.progress import progress as progress_bar
from visionlab.robustness.corruptions import check_corruptions, check_severities, corrupt
from visionlab.runtime import eval_mode

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CORRUPTION_COLUMNS",
    "corrupted_batches",
    "corruption_accuracies",
    "corruption_accuracy",
    "corruption_errors",
    "corruption_rows",
    "plot_corruption_heatmap",
    "write_corruptions",
]

CORRUPTION_COLUMNS = ("model", "corruption", "severity", "n", "top1", "baseline_top1")


_Setting = tuple[str | None, int]  # (corruption, severity); (None, 0): the clean images


class _CorruptedChunks(Dataset):
    """Item ``k``: ``(corrupted images, labels)`` of the ``k``-th batch of every setting's batches of ``data`` in
    turn (setting by setting, each ``ceil(len(data) / batch_size)`` batches of consecutive images), as the
    DataLoader of :func:`corrupted_batches` collates them; image ``i`` seeded by its position ``i`` in ``data``."""

    def __init__(self, data: Dataset, settings: Sequence[_Setting], seed: int, batch_size: int) -> None:
        self.data, self.settings, self.seed, self.batch_size = data, list(settings), seed, batch_size
        self.per_setting = -(-len(data) // batch_size)

    def __len__(self) -> int:
        return len(self.settings) * self.per_setting

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        (corruption, severity), chunk = self.settings[k // self.per_setting], k % self.per_setting
        indices = range(chunk * self.batch_size, min(len(self.data), (chunk + 1) * self.batch_size))
        images, labels = default_collate([self.data[i] for i in indices])
        return corrupt(images, corruption, severity, seed=self.seed, indices=indices), labels


def _setting_batches(
    data: Dataset | Iterable, settings: Sequence[_Setting], seed: int, batch_size: int, workers: int
) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """For each setting in turn, an iterator of its ``(corrupted images, labels)`` batches, to be read out before
    the next setting's. A map-style dataset: one DataLoader over :class:`_CorruptedChunks`, its ``workers``
    processes corrupting the batches of every setting ahead of the reader; anything else is iterated as a loader
    for each setting and each batch corrupted here, images numbered by their position in the loader's order."""
    if not isinstance(data, Dataset) or isinstance(data, torch.utils.data.IterableDataset):
        for corruption, severity in settings:
            yield _loader_batches(data, corruption, severity, seed)
        return
    chunks = _CorruptedChunks(data, settings, seed, batch_size)
    stream = iter(DataLoader(chunks, batch_size=None, shuffle=False, num_workers=workers))
    for _ in settings:
        yield itertools.islice(stream, chunks.per_setting)
    next(stream, None)  # the end of the stream: its worker processes stop now


def _loader_batches(
    loader: Iterable, corruption: str | None, severity: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    seen = 0
    for images, labels in loader:
        indices = range(seen, seen + images.shape[0])
        seen += images.shape[0]
        yield corrupt(images, corruption, severity, seed=seed, indices=indices), labels


def corrupted_batches(
    data: Dataset | Iterable,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 250,
    workers: int = 0,
    clean: bool = False,
) -> Iterator[tuple[str | None, int, torch.Tensor, torch.Tensor]]:
    """``(corruption, severity, corrupted images, labels)`` for every batch of ``data`` under every corruption ×
    severity (corruption by corruption, severities in the order given, batches in order): the images
    :func:`corruption_accuracies` evaluates, for a caller that wants them.

    Args:
        data: a map-style dataset of ``(image (C, H, W), label)`` — files, or held in memory — or a loader
            yielding ``(images, labels)`` in a fixed order. Image ``i`` (its position) is corrupted from the seed
            ``(seed, i, corruption, severity)``.
        corruptions: names from :data:`~visionlab.robustness.corruptions.CORRUPTIONS` (default all 15).
        severities: each in 1-5 (default all five).
        seed: a non-negative integer fixing every corrupted image.
        batch_size: images per batch of a dataset (a loader keeps its own).
        workers: processes making a dataset's batches (a DataLoader's, started once for all the settings; 0: this
            process). Ignored for a loader. The images are the same, bit for bit, for any ``workers`` and
            ``batch_size``.
        clean: first the clean images, as ``(None, 0, images, labels)``.
    """
    corruptions, severities = check_corruptions(corruptions), check_severities(severities)
    check_integer(seed, "seed", minimum=0)
    check_integer(batch_size, "batch_size", minimum=1)
    check_integer(workers, "workers", minimum=0)
    settings = ([(None, 0)] if clean else []) + [(c, s) for c in corruptions for s in severities]
    streams = _setting_batches(data, settings, seed, batch_size, workers)
    for (corruption, severity), batches in zip(settings, streams, strict=True):
        for images, labels in batches:
            yield corruption, severity, images, labels


def _top1_counts(
    models: Mapping[str, nn.Module], batches: Iterable, devices: Mapping[str, torch.device]
) -> tuple[dict[str, int], int]:
    """``({name: correct top-1}, images)`` of every model over ``batches``, each batch fed to all of them (moved to
    each model's device), without gradients."""
    correct = {name: torch.zeros((), dtype=torch.int64, device=devices[name]) for name in models}
    n = 0
    with torch.no_grad():
        for images, labels in batches:
            for name, model in models.items():
                device = devices[name]
                correct[name] += (model(images.to(device)).argmax(1) == labels.to(device)).sum()
            n += labels.shape[0]
    return {name: int(count) for name, count in correct.items()}, n


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device``, else the device of the model's parameters, else the CPU."""
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def corruption_accuracy(
    model: nn.Module,
    data: Dataset | Iterable,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 250,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1 accuracy (%) of ``model`` on the clean images of ``data`` and under each corruption × severity.

    Args:
        model: a classifier on pixels in [0, 1] (normalizing inside), already on ``device``; its submodules'
            modes are restored afterwards.
        data: a map-style :class:`~torch.utils.data.Dataset` of ``(image (C, H, W), label)`` (files, or held in
            memory), or a loader yielding ``(images, labels)`` batches (in a fixed order: its position numbers each
            image's seed).
        corruptions: names from :data:`~visionlab.robustness.corruptions.CORRUPTIONS` (default all 15).
        severities: each in 1-5 (default all five).
        seed: a non-negative integer fixing every corrupted image.
        device: where the model runs (default: its parameters' device, else the CPU).
        batch_size: images per batch for a dataset (a loader keeps its own).
        workers: processes corrupting a dataset's batches ahead of the forward passes (:func:`corrupted_batches`;
            0: this process); the result is the same for any number. Ignored for a loader.
        progress: a progress line per corruption × severity on stderr.

    Returns ``{"n", "seed", "corruptions", "severities", "clean_top1", "top1": {corruption: [top-1 % per
    severity, in the order of "severities"]}, "mean_corruption_top1", "counts": {"clean": int, corruption: [int
    per severity]}}``; the mean is over every corruption × severity (unweighted). Cost: ``1 + corruptions ×
    severities`` passes over the data, each image corrupted on the CPU. Several models on the same images:
    :func:`corruption_accuracies`, which corrupts each image once for all of them.
    """
    return corruption_accuracies(
        {"model": model}, data, corruptions, severities, seed=seed, device=device, batch_size=batch_size,
        workers=workers, progress=progress,
    )["model"]  # fmt: skip


def corruption_accuracies(
    models: Mapping[str, nn.Module],
    data: Dataset | Iterable,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 250,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`corruption_accuracy` of each of several models on the same corrupted images, each batch corrupted
    once and fed to every model: corrupting the images (NumPy / OpenCV, image by image on the CPU) is the cost, not
    the models' forward passes, so comparing k models costs little more than one.

    Args:
        models: ``{name: classifier}``, each on pixels in [0, 1] and taking the images of ``data`` as they are
            (same channels and size); each model's modes are restored afterwards.
        device: where every model runs (default: each model's parameters' device, else the CPU); each batch is
            moved to each model's device.

    ``data``, ``corruptions``, ``severities``, ``seed``, ``batch_size``, ``workers`` and ``progress`` are as for
    :func:`corruption_accuracy`.

    Returns ``{name: result}``, each result exactly what :func:`corruption_accuracy` returns for that model alone
    (the same images, batches and counts). Raises :class:`~visionlab.errors.ConfigError` (``models``) for no model.
    """
    corruptions, severities = check_corruptions(corruptions), check_severities(severities)
    check_integer(seed, "seed", minimum=0)
    check_integer(batch_size, "batch_size", minimum=1)
    check_integer(workers, "workers", minimum=0)
    if not models:
        raise ConfigError("no model given", field="models")
    devices = {name: _model_device(model, device) for name, model in models.items()}
    settings = [(None, 0)] + [(c, s) for c in corruptions for s in severities]
    counts: dict[tuple[str | None, int], dict[str, int]] = {}
    n = 0
    with ExitStack() as modes:
        for model in models.values():
            modes.enter_context(eval_mode(model))
        streams = _setting_batches(data, settings, seed, batch_size, workers)
        for setting, batches in zip(progress_bar(settings, desc="corruptions", enabled=progress), streams, strict=True):
            counts[setting], n = _top1_counts(models, batches, devices)
    return {name: _result({key: c[name] for key, c in counts.items()}, n, seed, corruptions, severities)
            for name in models}  # fmt: skip


def _result(
    counts: Mapping[tuple[str | None, int], int],
    n: int,
    seed: int,
    corruptions: Sequence[str],
    severities: Sequence[int],
) -> dict[str, Any]:
    """One model's result of :func:`corruption_accuracy` from its correct counts per (corruption, severity)."""
    pct = {key: 100.0 * c / max(n, 1) for key, c in counts.items()}
    top1 = {c: [pct[c, s] for s in severities] for c in corruptions}
    return {
        "n": n, "seed": seed, "corruptions": list(corruptions), "severities": list(severities),
        "clean_top1": pct[None, 0], "top1": top1,
        "mean_corruption_top1": sum(map(sum, top1.values())) / (len(corruptions) * len(severities)),
        "counts": {"clean": counts[None, 0], **{c: [counts[c, s] for s in severities] for c in corruptions}},
    }  # fmt: skip


def _ratio(numerator: float, denominator: float) -> float | None:
    """``100 * numerator / denominator``, or None where the denominator is not positive (the baseline lost no
    accuracy: the ratio says nothing)."""
    return 100.0 * numerator / denominator if denominator > 0 else None


def _mean(values: Iterable[float | None]) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values) / len(values)  # type: ignore[misc]


def corruption_errors(result: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """ImageNet-C's corruption errors of ``result`` relative to ``baseline`` (both from
    :func:`corruption_accuracy`, on the same corruptions and severities), in % (100: as bad as the baseline).

    Returns ``{"ce": {corruption: CE_c}, "mce", "relative_ce": {corruption: RelCE_c}, "relative_mce"}`` (see the
    module docstring). A ratio whose baseline denominator is 0 (no baseline error, or no baseline loss under that
    corruption) is None, and so is a mean over it. Raises ``ValueError`` when the two cover different
    corruptions or severities.
    """
    if list(result["corruptions"]) != list(baseline["corruptions"]) or list(result["severities"]) != list(
        baseline["severities"]
    ):
        raise ValueError("corruption_errors: the result and the baseline cover different corruptions or severities")
    ce, relative = {}, {}
    clean, base_clean = 100.0 - result["clean_top1"], 100.0 - baseline["clean_top1"]
    for c in result["corruptions"]:
        errors = [100.0 - a for a in result["top1"][c]]
        base = [100.0 - a for a in baseline["top1"][c]]
        ce[c] = _ratio(sum(errors), sum(base))
        relative[c] = _ratio(sum(e - clean for e in errors), sum(b - base_clean for b in base))
    return {"ce": ce, "mce": _mean(ce.values()), "relative_ce": relative, "relative_mce": _mean(relative.values())}


def corruption_rows(result: Mapping[str, Any], label: str = "model") -> list[dict[str, Any]]:
    """One row per corruption × severity (the columns of :data:`CORRUPTION_COLUMNS`), after a ``clean`` row of
    severity 0; ``baseline_top1`` from ``result["baseline"]`` when present, else None."""
    base = result.get("baseline")
    rows = [{"model": label, "corruption": "clean", "severity": 0, "n": result["n"], "top1": result["clean_top1"],
             "baseline_top1": base["clean_top1"] if base else None}]  # fmt: skip
    for c in result["corruptions"]:
        for k, s in enumerate(result["severities"]):
            rows.append({"model": label, "corruption": c, "severity": s, "n": result["n"], "top1": result["top1"][c][k],
                         "baseline_top1": base["top1"][c][k] if base else None})  # fmt: skip
    return rows


def write_corruptions(result: Mapping[str, Any], out_dir: str | Path, label: str = "model") -> tuple[Path, Path]:
    """``out_dir/corruptions.csv`` (:func:`corruption_rows`) and ``out_dir/corruptions.json`` (``result`` with
    ``"model": label``). Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "corruptions.csv", out / "corruptions.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CORRUPTION_COLUMNS)
        writer.writeheader()
        writer.writerows(corruption_rows(result, label))
    json_path.write_text(json.dumps({"model": label, **result}, indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


def _heatmap_figure(result: Mapping[str, Any], title: str) -> Figure:
    """Top-1 % as colour and number, one row per corruption and one column per severity (Agg canvas: no global
    backend is set)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names, severities = list(result["corruptions"]), list(result["severities"])
    grid = [result["top1"][c] for c in names]
    fig = Figure(figsize=(1.4 + 0.75 * len(severities), 1.3 + 0.32 * len(names)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(
                j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white" if value < 60 else "black"
            )
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_xlabel("severity")
    ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=ax, label="top-1 accuracy (%)")
    fig.tight_layout()
    return fig


def plot_corruption_heatmap(result: Mapping[str, Any], out: str | Path, label: str | None = None) -> Path:
    """PNG heat map of ``result`` (:func:`corruption_accuracy`): corruption × severity top-1 %, titled with the
    model (``label``, else ``result["model"]``), its clean and mean corruption accuracy. Returns ``out``."""
    label = label or str(result.get("model", "model"))
    title = f"{label}: clean {result['clean_top1']:.1f}%, mean corrupted {result['mean_corruption_top1']:.1f}%"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _heatmap_figure(result, title).savefig(out, dpi=110)
    return out
