"""Robust evaluation: clean and adversarial accuracy over a loader, sweeps over ε and steps, CSV/JSON, plots.

Definition (RobustBench's): robust top-k is the top-k accuracy on the attack's outputs, the attack being run on
*every* example (also those the model already misclassifies). For completeness the result also gives
``robust_and_clean_top1``, the share of examples correct both clean and attacked (AutoAttack's count, which is
<= clean top-1 by construction); the two differ only where an attack turns a misclassified image into a
correctly classified one, which PGD almost never does.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from visionlab.checks import is_number
from visionlab.errors import ConfigError
from visionlab.progress import progress as progress_bar
from visionlab.robustness.attacks import PGD, Attack, check_images
from visionlab.robustness.steps import default_step
from visionlab.runtime import eval_mode
from visionlab.runtime.distributed import DistContext
from visionlab.runtime.metrics import topk_correct

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SWEEP_COLUMNS", "plot_accuracy_vs_eps", "plot_accuracy_vs_steps", "robust_evaluate", "sweep", "write_sweep"]

SWEEP_COLUMNS = (
    "model", "sweep", "norm", "eps", "step", "steps", "n",
    "clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1",
)  # fmt: skip


def _batches(loader: Iterable, device: torch.device, limit: int | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` on ``device``, stopping after ``limit`` examples (the last batch cut)."""
    seen = 0
    for images, labels in loader:
        if limit is not None:
            if seen >= limit:
                return
            images, labels = images[: limit - seen], labels[: limit - seen]
        seen += labels.shape[0]
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def robust_evaluate(
    model: nn.Module,
    loader: Iterable,
    attack: Attack,
    device: torch.device | str,
    *,
    progress: bool = False,
    limit: int | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Clean and robust top-1 / top-5 (%) of ``model`` over ``loader`` under ``attack``.

    Args:
        model: the pixel-space model ``attack`` was built on, already on ``device``.
        loader: yields ``(images, labels)`` with pixels in [0, 1].
        attack: any :class:`~visionlab.robustness.attacks.Attack`; it runs on every example.
        device: where batches are moved.
        progress: show a progress bar on stderr.
        limit: evaluate the first ``limit`` examples only.
        dist: distributed evaluation: each rank passes its shard of the data
            (:func:`~visionlab.runtime.distributed.shard_dataset`) and every rank gets the exact counts of all.

    Returns ``{"n", "clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1",
    "counts": {same keys: exact integer counts}, "early_stop": bool, "attack": {"repr", **settings}}``. Clean
    logits are computed in eval mode without gradients; the function itself is not under ``no_grad`` because the
    attack needs input gradients (it re-enables them even inside a caller's ``no_grad``). Each submodule's
    mode is restored afterwards.
    """
    device = torch.device(device)
    keys = ("clean_top1", "clean_top5", "robust_top1", "robust_top5", "robust_and_clean_top1")
    counts = {k: torch.zeros((), dtype=torch.int64, device=device) for k in keys}
    n = 0
    with eval_mode(model):
        batches = _batches(loader, device, limit)
        for images, labels in progress_bar(batches, desc="attack", enabled=progress):
            check_images(images, labels)
            with torch.no_grad():
                clean = model(images)
            adv = attack.run(images, labels)
            with torch.no_grad():
                robust = model(adv)
            for prefix, logits in (("clean", clean), ("robust", robust)):
                c1, c5 = topk_correct(logits, labels)
                counts[f"{prefix}_top1"] += c1
                counts[f"{prefix}_top5"] += c5
            both = (clean.argmax(1) == labels) & (robust.argmax(1) == labels)
            counts["robust_and_clean_top1"] += both.sum()
            n += labels.shape[0]
    total = torch.stack([*counts.values(), torch.tensor(n, device=device)])
    (dist or DistContext()).all_reduce(total)
    exact = {k: int(v) for k, v in zip(keys, total[:-1].tolist(), strict=True)}
    n = int(total[-1])
    result: dict[str, Any] = {"n": n}
    result.update({k: 100.0 * v / max(n, 1) for k, v in exact.items()})
    settings = attack.settings()
    result.update(counts=exact, early_stop=bool(settings.get("early_stop", False)))
    result["attack"] = {"repr": repr(attack), **settings}
    return result


def sweep(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    eps_list: Sequence[float],
    steps_list: Sequence[int],
    *,
    eps: float | None = None,
    steps: int | None = None,
    norm: str = "linf",
    step_ratio: float = 2.5,
    random_start: bool = False,
    restarts: int = 1,
    label: str = "model",
    limit: int | None = None,
    progress: bool = False,
    dist: DistContext | None = None,
) -> list[dict[str, Any]]:
    """Robust accuracy under PGD against ε (at ``steps`` iterations) and against steps (at radius ``eps``).

    Args:
        eps_list: radii (pixel units) of the ε sweep; 0 gives the clean accuracy.
        steps_list: iteration counts of the steps sweep.
        eps: radius of the steps sweep; default ``max(eps_list)``.
        steps: iterations of the ε sweep; default ``max(steps_list)``.
        norm: ``"linf"`` or ``"l2"``.
        step_ratio: step size = :func:`~visionlab.robustness.steps.default_step` ``(eps, steps, step_ratio)``,
            i.e. ``eps * (step_ratio / steps)`` (Madry et al.'s 2.5 lets PGD reach the boundary of the ball from any
            start).
        random_start: as for :class:`~visionlab.robustness.attacks.PGD`.
        restarts: as for :class:`~visionlab.robustness.attacks.PGD`.
        label: the model's name in the rows (to overlay several models in one plot).
        limit: as for :func:`robust_evaluate`.
        progress: as for :func:`robust_evaluate`.
        dist: as for :func:`robust_evaluate`.

    Returns one row per setting with the keys of :data:`SWEEP_COLUMNS` (``sweep`` is ``"eps"`` or
    ``"steps"``), ε sweep first.
    """
    if not eps_list or not steps_list:
        raise ValueError("sweep: eps_list and steps_list must not be empty")
    # Checked before the step sizes are computed from them (a 0 would divide by zero there, not reach PGD's check).
    for name, counts in (("steps_list", steps_list), ("steps", [] if steps is None else [steps])):
        for k in counts:
            if not is_number(k, integer=True) or k < 1:
                raise ConfigError(f"PGD iteration counts must be integers >= 1, got {k!r}", field=name)
    eps = max(eps_list) if eps is None else eps
    steps = max(steps_list) if steps is None else steps
    settings = [("eps", e, steps) for e in eps_list] + [("steps", eps, k) for k in steps_list]
    rows = []
    for kind, e, k in settings:
        step = default_step(e, k, step_ratio)
        attack = PGD(model, eps=e, step=step, steps=k, norm=norm, random_start=random_start,
                     restarts=restarts)  # fmt: skip
        result = robust_evaluate(model, loader, attack, device, progress=progress, limit=limit, dist=dist)
        row = {"model": label, "sweep": kind, "norm": norm, "eps": e, "step": step, "steps": k}
        row.update({c: result[c] for c in SWEEP_COLUMNS if c in result})
        rows.append(row)
    return rows


def write_sweep(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` to ``out_dir/sweep.csv`` (columns :data:`SWEEP_COLUMNS`) and ``out_dir/sweep.json`` (the
    rows as a list). Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps([dict(r) for r in rows], indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


def _by_model(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list]:
    """``{label: rows}`` from one row list (grouped by its ``model`` column) or from a mapping of row sets."""
    if isinstance(rows, Mapping):
        return {str(k): list(v) for k, v in rows.items()}
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(str(r.get("model", "model")), []).append(r)
    return groups


def _plot(rows, kind: str, x_key: str, xlabel: str, out: str | Path) -> Path:
    """:func:`_figure` written to ``out`` (PNG; parent folders created)."""
    fig = _figure(rows, kind, x_key, xlabel)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def _figure(rows, kind: str, x_key: str, xlabel: str) -> Figure:
    """Robust (solid) and clean (dashed) top-1 against ``x_key`` for the rows of sweep ``kind``, one colour
    per model. Uses the Agg canvas directly, so no global matplotlib backend is set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, group) in enumerate(_by_model(rows).items()):
        points = sorted((r[x_key], r["robust_top1"], r["clean_top1"]) for r in group if r["sweep"] == kind)
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], color=f"C{i}", marker="o", label=f"{label} robust top-1")
        ax.plot(xs, [p[2] for p in points], color=f"C{i}", ls="--", label=f"{label} clean top-1")
    first = next((r for group in _by_model(rows).values() for r in group if r["sweep"] == kind), None)
    if first is not None:
        fixed = f"{first['steps']} steps" if kind == "eps" else f"ε = {first['eps']:g}"
        ax.set_title(f"PGD ({first['norm']}), {fixed}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if ax.get_lines():  # rows of the other sweep only: an empty plot, without matplotlib's empty-legend warning
        # Below the axes, two columns: inside them it covered a curve (the robust one crosses the whole height).
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_eps(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]], out: str | Path
) -> Path:
    """PNG of top-1 accuracy against ε (pixel units) from the ``"eps"`` rows of :func:`sweep`. ``rows`` is one
    list (models told apart by their ``model`` column) or ``{label: rows}``; each model is one colour."""
    return _plot(rows, "eps", "eps", "ε (pixel units)", out)


def plot_accuracy_vs_steps(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]], out: str | Path
) -> Path:
    """PNG of top-1 accuracy against PGD steps from the ``"steps"`` rows of :func:`sweep`; ``rows`` as for
    :func:`plot_accuracy_vs_eps`."""
    return _plot(rows, "steps", "steps", "PGD steps", out)
