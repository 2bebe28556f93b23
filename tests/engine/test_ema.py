"""The weight EMA: the average computed by hand, its warm-up, its isolation from the trained model, and the trainer's
use of it (validated every epoch, saved as ``model_ema.pth.tar``, continued exactly by a resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import CHECKPOINT, EMA, TrainConfig, Trainer, load_checkpoint
from visionlab.engine.ema import WeightEMA
from visionlab.errors import ConfigError

from ..conftest import Stop, StopAt
from .builders import WeightRecorder


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_rate_warms_up_then_holds_the_decay() -> None:
    ema = WeightEMA(_net(), 0.95)
    rates = []
    for _ in range(200):
        rates.append(ema.rate())
        ema.updates += 1
    assert rates[0] == pytest.approx(1 / 10) and rates[1] == pytest.approx(2 / 11) and rates[80] == pytest.approx(0.9)
    assert rates[170] == 0.95 and max(rates) == 0.95  # (1 + t) / (10 + t) passes 0.95 at t = 171


def test_update_is_the_weighted_average_of_the_two_models_and_copies_integer_buffers() -> None:
    model = _net()
    ema = WeightEMA(model, 0.9)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.arange(p.numel(), dtype=p.dtype).view_as(p) + 1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(5)
    ema.updates = 30  # rate min(0.9, 31/40) = 0.775
    ema.update(model)
    after, now = ema.module.state_dict(), model.state_dict()
    for key, value in after.items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == 5
        else:
            torch.testing.assert_close(value, 0.775 * before[key] + 0.225 * now[key], rtol=0, atol=1e-6)
    assert ema.updates == 31


def test_the_average_is_a_separate_eval_mode_copy_without_gradients() -> None:
    model = _net().train()
    ema = WeightEMA(model, 0.99)
    assert not ema.module.training and model.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        model[0].weight.zero_()
    assert ema.module[0].weight.abs().sum() > 0


def test_state_dict_round_trip_continues_the_same_average() -> None:
    model = _net()
    a = WeightEMA(model, 0.9)
    for _ in range(3):
        with torch.no_grad():
            model[0].weight.add_(0.5)
        a.update(model)
    b = WeightEMA(_net(), 0.9)
    b.load_state_dict(a.state_dict())
    assert b.updates == 3
    a.update(model)
    b.update(model)
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_outside_the_open_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        WeightEMA(_net(), decay)


def test_config_refuses_a_decay_of_one() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(ema=1.0).validate()
    assert err.value.field == "ema"


# ------------------------------------------------------------------------------------------------ in the trainer
def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=data, out=str(out), epochs=2, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7, ema=0.9,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_model_ema_holds_the_hand_computed_average_of_its_best_epoch(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = WeightRecorder(_cfg(tiny_fmnist, tmp_path / "run", epochs=3))
    trainer.history = []
    average = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert len(trainer.history) == 18  # 96 images / 16 x 3 epochs
    by_epoch = []
    for t, weights in enumerate(trainer.history):
        d = min(0.9, (1 + t) / (10 + t))
        for key, value in weights.items():
            average[key] = d * average[key] + (1 - d) * value if value.is_floating_point() else value
        if (t + 1) % 6 == 0:
            by_epoch.append({k: v.clone() for k, v in average.items()})
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ema_top1 = [r["val_ema_top1"] for r in records if r["type"] == "epoch"]
    best = ema_top1.index(max(ema_top1))  # the first epoch reaching the best EMA top-1
    saved = load_checkpoint(tmp_path / "run" / EMA)
    assert saved["epoch"] == best and "optimizer" not in saved
    for key, value in saved["model"].items():
        torch.testing.assert_close(value, by_epoch[best][key], rtol=0, atol=1e-5, msg=key)
    trained = load_checkpoint(tmp_path / "run" / CHECKPOINT)["model"]
    assert any(not torch.equal(trained[k], v) for k, v in saved["model"].items() if v.is_floating_point())
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["best_ema"] == max(ema_top1)
    epochs = [r for r in records if r["type"] == "epoch"]
    assert all({"val_ema_top1", "val_ema_top5", "val_ema_loss"} <= r.keys() for r in epochs)


@pytest.mark.parametrize("select_by", ["clean", "robust"])
def test_model_ema_is_kept_at_the_best_epoch_of_the_selection_metric(
    tiny_fmnist: str, tmp_path: Path, select_by: str
) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", select_by=select_by, robust_val=8))
    key, other = ("ema_robust_top1", "ema_top1") if select_by == "robust" else ("ema_top1", "ema_robust_top1")
    decisions = [
        trainer._average_is_best("ema", {key: value, other: 100.0 - value}) for value in (50.0, 40.0, 50.0, 60.0)
    ]
    assert decisions == [True, False, False, True] and trainer.best_ema == 60.0


def test_the_ema_checkpoint_evaluates_to_the_recorded_ema_accuracy(tiny_fmnist: str, tmp_path: Path) -> None:
    from visionlab.engine import evaluate, make_loader, model_from_checkpoint

    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run"))
    trainer.fit()
    saved = load_checkpoint(tmp_path / "run" / EMA)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    recorded = next(r["val_ema_top1"] for r in records if r["type"] == "epoch" and r["epoch"] == saved["epoch"])
    loader = make_loader(trainer.bundle.val, 16, train=False, workers=0, device=torch.device("cpu"))
    assert evaluate(model_from_checkpoint(saved), loader, torch.device("cpu"))["top1"] == recorded


def test_a_killed_and_resumed_run_continues_the_same_average(tiny_fmnist: str, tmp_path: Path) -> None:
    Trainer(_cfg(tiny_fmnist, tmp_path / "ref", epochs=3)).fit()
    with pytest.raises(Stop):  # killed at the 4th step of epoch 2
        Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=3), task=StopAt(10)).fit()
    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=3), resume=tmp_path / "run" / CHECKPOINT)
    assert resumed.ema is not None and resumed.ema.updates == 6
    resumed.fit()
    ref, run = load_checkpoint(tmp_path / "ref" / EMA)["model"], load_checkpoint(tmp_path / "run" / EMA)["model"]
    for key, value in ref.items():
        assert torch.equal(value, run[key]), key


def test_without_ema_there_is_no_average_file_and_no_ema_record(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", ema=0.0, epochs=1))
    record = trainer.fit()
    assert trainer.ema is None and not (tmp_path / "run" / EMA).exists()
    assert not any(key.startswith("val_ema") for key in record)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["best_ema"] is None
