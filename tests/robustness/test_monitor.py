"""RobustMonitor: the number --select-by robust selects on, and the catastrophic-overfitting alarm in the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from visionlab.engine import BEST, TrainConfig, Trainer, load_checkpoint
from visionlab.robustness import PGD, RobustMonitor, robust_evaluate
from visionlab.runtime.distributed import DistContext

from .conftest import predicted, tiny_model


@pytest.mark.parametrize(
    ("previous", "now", "collapsed"),
    [
        (None, 0.0, False),
        (71.1, 35.6, True),
        (71.1, 51.2, False),
        (50.0, 29.9, True),
        (50.0, 30.0, False),
        (30.0, 45.0, False),
    ],
)
def test_a_drop_of_more_than_20_points_is_a_collapse(previous: float | None, now: float, collapsed: bool) -> None:
    monitor = RobustMonitor(TensorDataset(torch.rand(2, 3, 6, 6), torch.zeros(2, dtype=torch.long)), eps=0.1)
    assert monitor.collapsed(previous, now) is collapsed


def test_measure_is_pgd10_step_eps_over_4_on_the_first_n_images() -> None:
    model = tiny_model()
    x = torch.rand(12, 3, 6, 6, dtype=torch.float64)
    data = TensorDataset(x, predicted(model, x))
    monitor = RobustMonitor(data, eps=0.05, n=8, batch_size=3)
    first8 = DataLoader(TensorDataset(x[:8], predicted(model, x[:8])), batch_size=8)
    expected = robust_evaluate(model, first8, PGD(model, 0.05, 0.0125, 10, random_start=False), "cpu")
    assert monitor.measure(model) == expected["robust_top1"]
    assert (monitor.loader.batch_size, monitor.loader.num_workers) == (3, 0)  # in process, the batches asked for


def test_trainer_flags_the_collapse_and_keeps_the_best_robust_epoch(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = TrainConfig(
        data=tiny_fmnist, out=str(tmp_path), epochs=4, batch_size=16, workers=0, progress=False, tensorboard=False,
        lr=0.01, select_by="robust", robust_val=16,
    )  # fmt: skip
    trainer = Trainer(cfg, callbacks=[])
    scripted = iter([40.0, 70.0, 35.0, 60.0])  # epoch 3 collapses (-35 points); epoch 2 is the best
    trainer.monitor.measure = lambda model: next(scripted)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["catastrophic_overfitting"] for r in epochs] == [False, False, True, False]
    assert [r["val_robust_top1"] for r in epochs] == [40.0, 70.0, 35.0, 60.0]
    assert "catastrophic overfitting at epoch 3" in capsys.readouterr().err
    best = load_checkpoint(tmp_path / BEST)
    assert best["epoch"] == 1 and best["best_robust_top1"] == 70.0


def test_measure_hands_its_attack_and_world_to_robust_evaluate(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionlab.robustness import monitor as monitor_module

    seen = {}

    def recording_evaluate(model, loader, attack, device, **kwargs):
        seen.update(settings=attack.settings(), device=device, **kwargs)
        return {"robust_top1": 12.5}

    monkeypatch.setattr(monitor_module, "robust_evaluate", recording_evaluate)
    model, world = tiny_model(), DistContext()
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    monitor = RobustMonitor(TensorDataset(x, predicted(model, x)), eps=0.08, steps=3, device="cpu", dist=world)
    assert monitor.measure(model) == 12.5
    assert seen["dist"] is world and seen["device"] == "cpu"
    assert {k: seen["settings"][k] for k in ("eps", "step", "steps", "random_start", "restarts", "targeted")} == {
        "eps": 0.08, "step": 0.08 * (2.5 / 3), "steps": 3, "random_start": False, "restarts": 1,
        "targeted": None}  # fmt: skip
