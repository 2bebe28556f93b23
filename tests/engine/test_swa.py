"""Stochastic weight averaging: the average computed by hand over the chosen steps, batch-norm statistics averaged
with the weights, the trainer's use of it (validated every epoch once it holds weights, ``model_swa.pth.tar`` at
its best epoch, ``metrics.jsonl``), beside the EMA and adversarial training, and an exact resume mid-average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import CHECKPOINT, EMA, SWA, TrainConfig, Trainer, WeightAverage, load_checkpoint
from visionlab.errors import ConfigError

from .builders import WeightRecorder


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _visit(model: nn.Module, t: int) -> dict[str, torch.Tensor]:
    """Move ``model`` to the t-th point of a made-up trajectory (weights and BN statistics); return its state."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.arange(p.numel(), dtype=p.dtype).view_as(p) * t + t**2)
        model[1].running_mean.fill_(float(t))
        model[1].running_var.fill_(1.0 + t)
        model[1].num_batches_tracked.fill_(t)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _mean(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0] if states[0][k].is_floating_point()}


def test_per_step_average_is_the_mean_of_the_weights_from_the_start_step_on() -> None:
    model = _net()
    swa = WeightAverage(model, start_step=3, every="steps")
    states = []
    for step in range(1, 8):
        states.append(_visit(model, step))
        swa.after_step(model, step)
        swa.after_epoch(model, step)  # not this cadence's: no effect
    assert swa.count == 5  # steps 3..7
    averaged = swa.module.state_dict()
    for key, value in _mean(states[2:]).items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-6, atol=1e-6, msg=key)
    assert averaged["1.num_batches_tracked"].item() == 7  # the latest model's count, not averaged


def test_per_epoch_average_takes_only_the_epoch_ends_from_the_start_step_on() -> None:
    model = _net()
    swa = WeightAverage(model, start_step=5, every="epoch")
    states = {}
    for step in range(1, 13):
        states[step] = _visit(model, step)
        swa.after_step(model, step)  # not this cadence's: no effect
        if step % 4 == 0:  # an epoch of 4 steps
            swa.after_epoch(model, step)
    assert swa.count == 2  # the ends of epochs 2 and 3 (steps 8 and 12); step 4 is before the start
    for key, value in _mean([states[8], states[12]]).items():
        torch.testing.assert_close(swa.module.state_dict()[key], value, rtol=1e-6, atol=1e-6, msg=key)


def test_the_average_is_a_separate_eval_mode_copy_and_round_trips_its_count() -> None:
    model = _net().train()
    a = WeightAverage(model, 0, "steps")
    assert not a.module.training and all(not p.requires_grad for p in a.module.parameters())
    assert a.count == 0
    for step in (1, 2):
        _visit(model, step)
        a.after_step(model, step)
    b = WeightAverage(_net(), 0, "steps")
    b.load_state_dict(a.state_dict())
    assert b.count == 2 and set(a.state_dict()["model"]) == set(model.state_dict())  # the plain architecture
    _visit(model, 3)
    a.after_step(model, 3)
    b.after_step(model, 3)
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_bad_cadence_or_start_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        WeightAverage(_net(), 0, "batch")
    assert err.value.field == "swa_every"
    with pytest.raises(ConfigError) as err:
        WeightAverage(_net(), -1, "epoch")
    assert err.value.field == "start_step"


@pytest.mark.parametrize(("start", "field"), [(3.5, "swa_start"), (-1.0, "swa_start")])
def test_config_refuses_a_start_outside_the_run(start: float, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(epochs=3, swa_start=start).validate()
    assert err.value.field == field
    TrainConfig(epochs=3, swa_start=3.0).validate()  # the last epoch's end: one weight, allowed


# ------------------------------------------------------------------------------------------------ in the trainer
def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=data, out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7, swa_start=1.5, swa_every="steps",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _epochs(run: Path) -> list[dict]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["type"] == "epoch"]


def test_the_trainers_average_is_the_hand_computed_mean_and_model_swa_its_best_epoch(
    tiny_fmnist: str, tmp_path: Path
) -> None:
    """96 images / 16 = 6 steps an epoch; --swa-start 1.5 averages the weights after steps 9..18."""
    trainer = WeightRecorder(_cfg(tiny_fmnist, tmp_path / "run"))
    trainer.history = []
    trainer.fit()
    assert len(trainer.history) == 18 and trainer.swa is not None and trainer.swa.start_step == 9
    final = load_checkpoint(tmp_path / "run" / CHECKPOINT)["swa"]
    assert final["count"] == 10
    for key, value in _mean(trainer.history[8:]).items():
        torch.testing.assert_close(final["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    epochs = _epochs(tmp_path / "run")
    assert [r["swa_count"] for r in epochs] == [0, 4, 10]
    assert "val_swa_top1" not in epochs[0]  # nothing averaged yet: nothing validated, no file
    assert all({"val_swa_top1", "val_swa_top5", "val_swa_loss"} <= r.keys() for r in epochs[1:])
    swa_top1 = [r["val_swa_top1"] for r in epochs[1:]]
    best = 1 + swa_top1.index(max(swa_top1))
    saved = load_checkpoint(tmp_path / "run" / SWA)
    assert saved["epoch"] == best and "optimizer" not in saved
    for key, value in _mean(trainer.history[8 : 6 * (best + 1)]).items():
        torch.testing.assert_close(saved["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["best_swa"] == max(swa_top1)


def test_per_epoch_averaging_in_the_trainer_takes_the_epoch_ends(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = WeightRecorder(_cfg(tiny_fmnist, tmp_path / "run", swa_start=1.0, swa_every="epoch"))
    trainer.history = []
    trainer.fit()
    final = load_checkpoint(tmp_path / "run" / CHECKPOINT)["swa"]
    assert final["count"] == 3  # after steps 6, 12 and 18
    for key, value in _mean([trainer.history[i] for i in (5, 11, 17)]).items():
        torch.testing.assert_close(final["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_the_swa_checkpoint_evaluates_to_the_recorded_swa_accuracy(tiny_fmnist: str, tmp_path: Path) -> None:
    from visionlab.engine import evaluate, make_loader, model_from_checkpoint

    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=2, swa_start=0.0))
    trainer.fit()
    saved = load_checkpoint(tmp_path / "run" / SWA)
    recorded = next(r["val_swa_top1"] for r in _epochs(tmp_path / "run") if r["epoch"] == saved["epoch"])
    loader = make_loader(trainer.bundle.val, 16, train=False, workers=0, device=torch.device("cpu"))
    assert evaluate(model_from_checkpoint(saved), loader, torch.device("cpu"))["top1"] == recorded


class _StopAt:
    """The run's own objective, raising at its n-th call (1-based): a kill in the middle of an epoch."""

    class Stop(Exception):
        pass

    def __init__(self, task, n: int) -> None:
        self.task, self.n, self.calls = task, n, 0

    def __call__(self, model, images, target):
        self.calls += 1
        if self.calls == self.n:
            raise self.Stop
        return self.task(model, images, target)


@pytest.mark.parametrize(
    "extra",
    [dict(), dict(ema=0.9, swa_every="epoch"), dict(adv_train="fgsm-rs", select_by="robust", robust_val=16)],
    ids=["swa", "swa-and-ema", "swa-adv-train"],
)
def test_a_run_killed_mid_average_resumes_bit_for_bit(tiny_fmnist: str, tmp_path: Path, extra: dict) -> None:
    """Killed at the 3rd step of epoch 3, the average holding 4 weights (per step: steps 9-12) or 1 (per epoch:
    step 12): the resumed run ends with the very same weights, averages, count and records as the run never
    stopped."""
    reference = Trainer(_cfg(tiny_fmnist, tmp_path / "ref", **extra))
    reference.fit()
    stopped = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **extra))
    stopped.task = _StopAt(stopped.task, 15)
    with pytest.raises(_StopAt.Stop):
        stopped.fit()
    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **extra), resume=tmp_path / "run" / CHECKPOINT)
    assert resumed.swa is not None and resumed.swa.count == (1 if "ema" in extra else 4)
    resumed.fit()
    ref, run = load_checkpoint(tmp_path / "ref" / CHECKPOINT), load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ref["swa"]["count"] == run["swa"]["count"]
    for part in ("model", "swa"):
        mine = run[part] if part == "model" else run[part]["model"]
        theirs = ref[part] if part == "model" else ref[part]["model"]
        for key, value in theirs.items():
            assert torch.equal(value, mine[key]), (part, key)
    for name in (SWA, EMA) if "ema" in extra else (SWA,):
        for key, value in load_checkpoint(tmp_path / "ref" / name)["model"].items():
            assert torch.equal(value, load_checkpoint(tmp_path / "run" / name)["model"][key]), (name, key)
    drop = ("seconds", "train_seconds", "data_wait_seconds")  # wall-clock times, not the run's arithmetic
    strip = [{k: v for k, v in r.items() if k not in drop} for r in _epochs(tmp_path / "ref")]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in _epochs(tmp_path / "run")]


def test_with_adversarial_training_and_the_ema_every_average_is_pgd_validated(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(
        _cfg(tiny_fmnist, tmp_path / "run", epochs=2, swa_start=1.0, ema=0.9, adv_train="fgsm-rs",
             select_by="robust", robust_val=8)
    )  # fmt: skip
    trainer.fit()
    epochs = _epochs(tmp_path / "run")
    keys = {"val_robust_top1", "val_ema_robust_top1", "val_swa_robust_top1", "val_ema_top1", "val_swa_top1"}
    assert all(keys <= set(r) for r in epochs)  # steps 6..12 averaged: the average exists from epoch 1's end
    assert (tmp_path / "run" / EMA).is_file() and (tmp_path / "run" / SWA).is_file()
    best = max(r["val_swa_robust_top1"] for r in epochs)  # --select-by robust: the average kept by its PGD top-1
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["best_swa"] == best


def test_without_swa_there_is_no_average_file_and_no_swa_record(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", swa_start=None, swa_every="epoch", epochs=1))
    record = trainer.fit()
    assert trainer.swa is None and not (tmp_path / "run" / SWA).exists()
    assert not any(key.startswith(("val_swa", "swa_")) for key in record)
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["best_swa"] is None and "swa" not in state
