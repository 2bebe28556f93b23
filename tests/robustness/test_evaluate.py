"""robust_evaluate counts, sweeps, CSV/JSON and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from visionlab.robustness.attacks import PGD
from visionlab.robustness.evaluate import (
    SWEEP_COLUMNS,
    plot_accuracy_vs_eps,
    plot_accuracy_vs_steps,
    robust_evaluate,
    sweep,
    write_sweep,
)

from .conftest import batch, predicted, tiny_model


def _data(n: int = 20):
    model, x = tiny_model(), batch(n)
    y = predicted(model, x)
    y[::4] = (y[::4] + 1) % 5  # every 4th label wrong: clean top-1 = 75%
    return model, x, y, DataLoader(TensorDataset(x, y), batch_size=6)


def test_robust_evaluate_counts_match_a_manual_computation() -> None:
    model, x, y, loader = _data()
    attack = PGD(model, 0.01, 0.0025, steps=5, random_start=False)
    model.train()
    with torch.no_grad():  # the attack re-enables gradients
        result = robust_evaluate(model, loader, attack, "cpu")
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    adv = torch.cat([attack(xb, yb) for xb, yb in DataLoader(TensorDataset(x, y), batch_size=6)])
    with torch.no_grad():
        clean, robust = model(x), model(adv)
    top5 = lambda logits: (logits.topk(5, 1).indices == y[:, None]).any(1).sum().item()  # noqa: E731
    counts = {
        "clean_top1": (clean.argmax(1) == y).sum().item(), "clean_top5": top5(clean),
        "robust_top1": (robust.argmax(1) == y).sum().item(), "robust_top5": top5(robust),
        "robust_and_clean_top1": ((clean.argmax(1) == y) & (robust.argmax(1) == y)).sum().item(),
    }  # fmt: skip
    assert result["counts"] == counts and result["n"] == 20
    assert result["clean_top1"] == 75.0 and result["clean_top5"] == 100.0  # 5 classes: top-5 is everything
    assert 0 < result["robust_top1"] < result["clean_top1"]
    assert result["robust_top1"] == 100.0 * counts["robust_top1"] / 20
    assert result["attack"]["name"] == "PGD" and result["attack"]["repr"] == repr(attack)
    assert result["early_stop"] is False


def test_robust_evaluate_limit_and_zero_eps() -> None:
    model, _, _, loader = _data()
    result = robust_evaluate(model, loader, PGD(model, 0.0, 0.01, steps=2), torch.device("cpu"), limit=9)
    assert result["n"] == 9 and result["robust_top1"] == result["clean_top1"]
    assert result["counts"]["clean_top1"] == 9 - 3  # labels 0, 4, 8 are wrong


def test_sweep_rows_files_and_plots(tmp_path: Path) -> None:
    model, _, _, loader = _data(12)
    rows = sweep(model, loader, "cpu", [0.0, 0.005, 0.02], [1, 4], label="tiny")
    assert [(r["sweep"], r["eps"], r["steps"]) for r in rows] == [
        ("eps", 0.0, 4), ("eps", 0.005, 4), ("eps", 0.02, 4), ("steps", 0.02, 1), ("steps", 0.02, 4),
    ]  # fmt: skip
    assert all(set(SWEEP_COLUMNS) <= set(r) for r in rows)
    assert rows[0]["robust_top1"] == rows[0]["clean_top1"] == 75.0
    assert 0 < rows[2]["robust_top1"] < rows[1]["robust_top1"] < rows[0]["robust_top1"]
    assert rows[2]["robust_top1"] == rows[4]["robust_top1"]  # the same setting reached from both sweeps
    assert rows[1]["step"] == 2.5 * 0.005 / 4

    csv_path, json_path = write_sweep(rows, tmp_path / "out")
    with open(csv_path, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(SWEEP_COLUMNS) and len(table) == 5
    assert float(table[3]["robust_top1"]) == rows[3]["robust_top1"] and table[3]["model"] == "tiny"
    assert json.loads(json_path.read_text(encoding="utf-8")) == rows

    other = [dict(r, model="other", robust_top1=r["robust_top1"] / 2) for r in rows]
    # Two models overlaid: one row list told apart by the model column, or a mapping of row sets.
    for out in (
        plot_accuracy_vs_eps(rows + other, tmp_path / "plots" / "eps.png"),
        plot_accuracy_vs_steps({"tiny": rows, "other": other}, tmp_path / "plots" / "steps.png"),
    ):
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
