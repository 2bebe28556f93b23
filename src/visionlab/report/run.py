"""A run directory as the report reads it: the configuration, the metric records, and the files the analysis
commands write next to the checkpoint by default.

::

    RUN/config.yaml, metrics.jsonl, model_best.pth.tar, checkpoint.pth.tar     visionlab train --out RUN
    RUN/saliency/{images,saliency,saliency_heatmap}.png                       visionlab saliency --resume RUN/...
    RUN/attack/{original,adversarial,difference}.png                          visionlab attack --resume RUN/... -v
    RUN/attack/attack.json                                                    visionlab attack --resume RUN/...
    RUN/explain/{explain.png,explain.json}                                    visionlab explain --resume RUN/...
    RUN/explain/{cascade,similarity,faithfulness}.png      visionlab explain ... --sanity --faithfulness
    RUN/robustness/sweep.json                                                 visionlab robustness --resume RUN/...
    RUN/corruptions/corruptions.{json,png}                                    visionlab corruptions --resume RUN/...
    RUN/certify/certify.json                                                  visionlab certify --resume RUN/...
    RUN/conv/native/, RUN/conv/custom/     visionlab train --out RUN/conv/native [--use-custom-conv] (make demo)

The last are run directories of their own: one short training run, trained once with each convolution, that the
report compares (a comparison of RUN's own size would cost a second full training).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visionlab.errors import RunDirError
from visionlab.runtime.metrics import read_metrics

__all__ = ["Run", "load_run", "load_runs"]

BEST, LAST = "model_best.pth.tar", "checkpoint.pth.tar"
_RUN_FILES = ("config.yaml", "metrics.jsonl")  # a directory holding either is a run directory
# What the report reads of each row of sweep.json (visionlab.robustness.SWEEP_COLUMNS holds them all).
_SWEEP_KEYS = {"model", "sweep", "norm", "eps", "steps", "n", "clean_top1", "robust_top1"}
# What the report reads of corruptions.json (visionlab.robustness.corruption_accuracy's result).
_CORRUPTION_KEYS = {"model", "n", "seed", "corruptions", "severities", "clean_top1", "top1", "mean_corruption_top1"}
# What the report reads of certify.json (visionlab.robustness.Certification.to_dict writes them).
_CERTIFY_KEYS = {"sigma", "n0", "n", "alpha", "images", "abstained", "certified_accuracy", "images_detail"}


@dataclass
class Run:
    """One run directory, read.

    Attributes:
        path: the directory.
        label: its name in the report (the directory name; made unique when several runs share one).
        config: ``config.yaml`` as a dict (empty when the file is missing).
        records: the records of ``metrics.jsonl`` (step and epoch records, in file order).
        conv: the run directories in its ``conv/`` folder, labelled ``conv/NAME`` (by name; a sub-folder with
            neither ``config.yaml`` nor ``metrics.jsonl`` is not a run and is left out).
        model_flags: for a model that visionlab did not train (``visionlab report --model-arch ...``), the flags
            naming it, which the commands the report suggests repeat instead of ``--resume CHECKPOINT``; such a
            run has no configuration or training records, and ``path`` is the folder of its weights or factory
            file, where the analysis commands write.
    """

    path: Path
    label: str
    config: dict[str, Any]
    records: list[dict[str, Any]]
    conv: list[Run] = field(default_factory=list)
    model_flags: tuple[str, ...] = ()

    @property
    def trained(self) -> bool:
        """Whether visionlab trained this run (False for a model named by :attr:`model_flags`)."""
        return not self.model_flags

    def model_arguments(self) -> tuple[str, ...]:
        """The command-line arguments naming this run's model: ``--resume CHECKPOINT``, or :attr:`model_flags`."""
        return self.model_flags or ("--resume", str(self.resume))

    @property
    def epochs(self) -> list[dict[str, Any]]:
        """The epoch records (``type: "epoch"``), one per finished epoch."""
        return [r for r in self.records if r.get("type") == "epoch"]

    @property
    def checkpoint(self) -> Path | None:
        """``model_best.pth.tar``, else ``checkpoint.pth.tar``, else None (no epoch finished)."""
        return next((p for p in (self.path / BEST, self.path / LAST) if p.is_file()), None)

    @property
    def resume(self) -> Path:
        """The checkpoint to name in the commands the report suggests (``model_best.pth.tar`` when none exists)."""
        return self.checkpoint or self.path / BEST

    def file(self, *parts: str) -> Path | None:
        """``path/parts...`` when that file exists, else None."""
        path = self.path.joinpath(*parts)
        return path if path.is_file() else None

    def attack_result(self) -> dict[str, Any] | None:
        """The numbers of the last ``visionlab attack`` on this run (``attack/attack.json``), or None."""
        path = self.file("attack", "attack.json")
        return _read_json(path, dict) if path else None

    def explain_result(self) -> dict[str, Any] | None:
        """What the last ``visionlab explain`` on this run found (``explain/explain.json``), or None."""
        path = self.file("explain", "explain.json")
        return _read_json(path, dict) if path else None

    def sweep_rows(self) -> list[dict[str, Any]] | None:
        """The rows of ``visionlab robustness`` (``robustness/sweep.json``), or None."""
        path = self.file("robustness", "sweep.json")
        if path is None:
            return None
        rows = _read_json(path, list)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or not set(row) >= _SWEEP_KEYS:
                raise RunDirError(f"{path}: row {number} lacks one of {sorted(_SWEEP_KEYS)}")
        return rows

    def corruption_result(self) -> dict[str, Any] | None:
        """The result of ``visionlab corruptions`` (``corruptions/corruptions.json``), or None."""
        path = self.file("corruptions", "corruptions.json")
        if path is None:
            return None
        result = _read_json(path, dict)
        if not set(result) >= _CORRUPTION_KEYS:
            raise RunDirError(f"{path}: lacks one of {sorted(_CORRUPTION_KEYS)}")
        return result

    def certification(self) -> dict[str, Any] | None:
        """The result of ``visionlab certify`` (``certify/certify.json``), or None."""
        path = self.file("certify", "certify.json")
        if path is None:
            return None
        result = _read_json(path, dict)
        if not set(result) >= _CERTIFY_KEYS:
            raise RunDirError(f"{path}: lacks one of {sorted(_CERTIFY_KEYS)}")
        return result


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read the run directory ``path``.

    Raises :class:`~visionlab.errors.RunDirError` naming the path when it does not exist, is not a directory,
    or holds neither ``config.yaml`` nor ``metrics.jsonl``, and when ``config.yaml`` is not a YAML mapping; a bad
    ``metrics.jsonl`` line is a :class:`~visionlab.errors.UserError` naming file and line. The runs of its
    ``conv/`` folder are read too (and raise the same errors), so a report fails before it evaluates anything.
    """
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory (a run directory holds config.yaml and metrics.jsonl)")
    config_path, metrics_path = path / "config.yaml", path / "metrics.jsonl"
    if not config_path.is_file() and not metrics_path.is_file():
        raise RunDirError(
            f"{path}: not a run directory (no config.yaml or metrics.jsonl; `visionlab train --out DIR` writes one)"
        )
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunDirError(f"{config_path}: not YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise RunDirError(f"{config_path}: not a mapping of settings (got {type(loaded).__name__})")
        config = loaded
    run = Run(path=path, label=label or path.resolve().name, config=config, records=read_metrics(path))
    run.conv = [load_run(p, f"conv/{p.name}") for p in _runs_in(path / "conv")]
    return run


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """:func:`load_run` for each path (all checked before any is used); runs whose directory names collide are
    labelled by their last two path components (``a/run``, ``b/run``), then by their position."""
    names = [Path(p).resolve().name for p in paths]
    labels = []
    for i, p in enumerate(paths):
        resolved = Path(p).resolve()
        label = resolved.name
        if names.count(label) > 1:
            label = f"{resolved.parent.name}/{label}"
        if label in labels:
            label = f"{label} ({i + 1})"
        labels.append(label)
    return [load_run(p, label) for p, label in zip(paths, labels, strict=True)]


def _runs_in(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that hold ``config.yaml`` or ``metrics.jsonl``, by name (none when
    ``folder`` is not a directory)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if any((p / f).is_file() for f in _RUN_FILES))


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise RunDirError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}, got {type(value).__name__}")
    return value
