"""Run directories written by hand for the report's tests: a run's ``config.yaml`` and ``metrics.jsonl`` as
training writes them (without checkpoints), and what ``analyse`` would return for it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from PIL import Image

from visionlab.report import ModelAnalysis
from visionlab.report.analysis import Sample

CONFIG = {"data": "fashion-mnist", "model": "simplenet", "conv": "native", "epochs": 2, "lr": 0.002,
          "out": "runs/x", "workers": 1}  # fmt: skip


def epoch_record(e: int, top1: float) -> dict:
    return dict(type="epoch", epoch=e, step=4 * (e + 1), lr=0.1, train_loss=1.0, train_top1=50.0, train_top5=90.0,
                val_loss=0.9, val_top1=top1, val_top5=95.0, seconds=2.0 + e)  # fmt: skip


def make_run(root: Path, name: str, config: dict | None = None, epochs: int = 2) -> Path:
    """A run directory as training writes it, without checkpoints: config.yaml and metrics.jsonl."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**CONFIG, **(config or {})}, sort_keys=False))
    records = [dict(type="step", epoch=0, step=2, lr=0.05, loss=1.2, top1=40.0, images_per_s=1000.0)]
    records += [epoch_record(e, 60.0 + 10 * e) for e in range(epochs)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def fake_analysis(run: Path, names: list[str]) -> ModelAnalysis:
    """What analyse() would return: 3 classes, 4 images, one of them misclassified."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="PNG")
    png = buffer.getvalue()
    samples = [Sample(i, label, [(p, 0.9), ((p + 1) % 3, 0.1)], png) for i, (label, p) in enumerate([(0, 0), (1, 2)])]
    return ModelAnalysis(run / "model_best.pth.tar", names, 4, 75.0, 100.0, [[2, 0, 0], [0, 0, 1], [0, 0, 1]], samples)
