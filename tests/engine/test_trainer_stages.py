"""The Trainer's construction stages and records, each pinned to a value (found by mutation testing,
docs/TESTING.md): the schedule's step counts, the loaders' limits, the monitor, the default run directory,
``config.yaml``, the resume and fine-tune notices, a refused checkpoint, the epoch record and the callbacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from visionlab.data import DatasetError
from visionlab.engine import BEST, CHECKPOINT, Callback, TrainConfig, Trainer, TrainingDiverged, load_checkpoint

from .test_trainer_values import TRAIN_LABELS, _bundle

VAL = list(range(10)) * 2


def _trainer(out: Path, bundle, resume: Path | None = None, **kw) -> Trainer:
    base = dict(
        data="fashion-mnist", out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7,
    )  # fmt: skip
    return Trainer(TrainConfig(**{**base, **kw}), bundle=bundle, resume=resume)


def test_schedule_and_scaler_are_sized_from_the_loader(tmp_path: Path) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    trainer = _trainer(tmp_path / "a", bundle, epochs=3, warmup=0.5, limit_train=80, limit_val=7)
    assert (len(trainer.train_loader.dataset), len(trainer.val_loader.dataset)) == (80, 7)
    assert len(trainer.train_loader) == 5  # 80 images, batches of 16
    assert (trainer.scheduler.warmup_steps, trainer.scheduler.total_steps) == (2, 15)  # round(0.5 * 5), 3 * 5
    assert trainer.val_loader.batch_size == trainer.train_loader.batch_sampler.batch_size == 16
    assert not trainer.scaler.is_enabled()  # no loss scaling on a CPU, even with amp
    assert not _trainer(tmp_path / "b", bundle, amp=True).scaler.is_enabled()


def test_a_robust_monitor_only_when_training_adversarially_or_selecting_by_robustness(tmp_path: Path) -> None:
    from visionlab.robustness import RobustMonitor

    bundle = _bundle(TRAIN_LABELS, VAL)
    assert _trainer(tmp_path / "a", bundle).monitor is None
    monitor = _trainer(tmp_path / "b", bundle, select_by="robust", robust_val=5, adv_eps=0.2).monitor
    assert isinstance(monitor, RobustMonitor)
    assert (monitor.eps, monitor.n, monitor.batch_size, len(monitor.loader.dataset)) == (0.2, 5, 16, 5)
    assert isinstance(_trainer(tmp_path / "c", bundle, adv_train="fgsm-rs").monitor, RobustMonitor)


def test_the_default_run_directory_and_its_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(TrainConfig(epochs=2, batch_size=16, workers=0, progress=False, tensorboard=False),
                      bundle=_bundle(TRAIN_LABELS, VAL))  # fmt: skip
    run = trainer.run_dir
    assert run.parent == Path("runs") and run.name.startswith("simplenet-fashion-mnist-")
    stamp = run.name.removeprefix("simplenet-fashion-mnist-")
    assert len(stamp) == 15 and stamp[8] == "-" and stamp.replace("-", "").isdigit()  # %Y%m%d-%H%M%S
    stored = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert stored == trainer.cfg.to_dict()
    assert list(stored) == list(trainer.cfg.to_dict())  # in field order, as written
    assert (run / "metrics.jsonl").read_text() == ""


# The --start-epoch fast-forward steps the scheduler before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_resume_and_fine_tune_say_what_they_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    _trainer(tmp_path / "a", bundle, epochs=2).fit()
    capsys.readouterr()
    resumed = _trainer(tmp_path / "b", bundle, epochs=2, resume=tmp_path / "a" / CHECKPOINT)
    assert (resumed.start_epoch, resumed.step) == (2, 12)
    assert capsys.readouterr().err == f"[visionlab] resuming {tmp_path / 'a' / CHECKPOINT} at epoch 3 (step 12)\n"
    tuned = _trainer(tmp_path / "c", bundle, epochs=2, start_epoch=1, resume=tmp_path / "a" / BEST)
    assert (tuned.start_epoch, tuned.step, tuned.best_top1) == (1, 6, 0.0)
    assert capsys.readouterr().err == (
        f"[visionlab] fine-tuning from the weights of {tmp_path / 'a' / BEST} (no optimizer state in it)\n"
    )


def test_a_checkpoint_for_other_data_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    _trainer(tmp_path / "a", bundle, epochs=1).fit()
    best = tmp_path / "a" / BEST
    five = bundle.__class__(**{**bundle.__dict__, "num_classes": 5})
    with pytest.raises(DatasetError) as info:
        _trainer(tmp_path / "b", five, epochs=1, resume=best)
    assert str(info.value) == f"fashion-mnist: 5 classes, but the checkpoint {best} predicts 10"
    rgb = bundle.__class__(**{**bundle.__dict__, "in_channels": 3})
    with pytest.raises(DatasetError) as info:
        _trainer(tmp_path / "b", rgb, epochs=1, resume=best)
    assert str(info.value) == (
        f"fashion-mnist: 3-channel 28x28 images, but the checkpoint {best} takes 1-channel 28x28 images"
    )
    bigger = bundle.__class__(**{**bundle.__dict__, "image_size": 32})
    with pytest.raises(DatasetError, match=r"1-channel 32x32 images, but the checkpoint .* takes 1-channel 28x28"):
        _trainer(tmp_path / "b", bigger, epochs=1, resume=best)


def test_the_same_number_of_epochs_as_planned_resumes(tmp_path: Path) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    with pytest.raises(TrainingDiverged):  # stop after epoch 1 of 3 (the only way to leave a run unfinished here)
        trainer = _trainer(tmp_path / "a", bundle, epochs=3)
        trainer.model.forward = _nan_in_epoch(trainer, 2)
        trainer.fit()
    resumed = _trainer(tmp_path / "a", bundle, epochs=3, resume=tmp_path / "a" / CHECKPOINT)
    assert resumed.full_resume and resumed.start_epoch == 1


def _nan_in_epoch(trainer: Trainer, epoch: int):
    forward, calls = trainer.model.forward, {"n": 0}

    def poisoned(images: torch.Tensor) -> torch.Tensor:
        out = forward(images)
        if trainer.model.training:
            calls["n"] += 1
            if calls["n"] > (epoch - 1) * len(trainer.train_loader):
                return out * float("nan")
        return out

    return poisoned


def test_divergence_before_any_checkpoint_says_none_was_written(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), epochs=2, print_freq=1)
    trainer.model.forward = _nan_in_epoch(trainer, 1)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    assert info.value.detail == "loss is nan at epoch 1, step 1; stopping (no checkpoint was written)"
    assert not (tmp_path / "run" / CHECKPOINT).exists()


class _Collect(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[Trainer, dict]] = []

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        assert (trainer.run_dir / CHECKPOINT).is_file()  # called after the checkpoint is written
        self.seen.append((trainer, dict(record)))


def test_epoch_records_callbacks_and_the_fit_result(tmp_path: Path) -> None:
    run, collect = tmp_path / "run", _Collect()
    trainer = _trainer(run, _bundle(TRAIN_LABELS, VAL), epochs=2, tensorboard=True)
    trainer.callbacks = [collect]
    scalars: list[tuple[str, float, int]] = []
    trainer.log.writer.add_scalar = lambda name, value, step: scalars.append((name, value, step))
    result = trainer.fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12] and [r["epoch"] for r in steps] == [0] * 3 + [1] * 3
    assert all(r["images_per_s"] > 0 and 0 <= r["top1"] <= 100 for r in steps)
    assert [(r["epoch"], r["step"]) for r in epochs] == [(0, 6), (1, 12)]
    assert set(epochs[0]) == {"type", "epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
                              "val_top5", "seconds", "step"}  # fmt: skip
    assert epochs[1]["lr"] == pytest.approx(0.0)  # the end of the cosine
    assert [(t, r) for t, r in collect.seen] == [(trainer, epochs[0]), (trainer, epochs[1])]
    per_epoch = {(name, step): value for name, value, step in scalars}
    for e, r in enumerate(epochs):  # an epoch's scalars are logged at step epoch + 1
        assert {k: per_epoch[(k, e + 1)] for k in ("val/top1", "val/top5", "val/loss", "train/top1", "train/top5",
                                                   "train/epoch_loss")} == {
            "val/top1": r["val_top1"], "val/top5": r["val_top5"], "val/loss": r["val_loss"],
            "train/top1": r["train_top1"], "train/top5": r["train_top5"], "train/epoch_loss": r["train_loss"],
        }  # fmt: skip
    step_scalars = [(name, step) for name, _, step in scalars if name in ("train/loss", "train/lr")]
    assert step_scalars == [(name, s) for s in (2, 4, 6, 8, 10, 12) for name in ("train/loss", "train/lr")]
    assert result == {**epochs[1], "run_dir": str(run), "best_top1": max(r["val_top1"] for r in epochs)}
    last = load_checkpoint(run / CHECKPOINT)
    assert (last["epoch"], last["step"], last["data_kind"], last["recipe"]) == (1, 12, "fashion-mnist", "small")
    assert last["class_names"] == [str(i) for i in range(10)] and last["config"] == trainer.cfg.to_dict()
    assert {"optimizer", "scheduler", "scaler", "rng"} <= set(last) and "optimizer" not in load_checkpoint(run / BEST)


def test_the_first_epoch_is_best_even_at_zero_accuracy_and_a_tie_is_not(tmp_path: Path) -> None:
    """Validation forced to 0% in every epoch (class 0 predicted, never the label): model_best is written once, by
    the first epoch, and kept."""
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, list(range(1, 10)) * 2), epochs=3)
    forward = trainer.model.forward

    def always_zero(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        return logits if trainer.model.training else torch.zeros_like(logits).index_fill_(1, torch.tensor([0]), 1.0)

    trainer.model.forward = always_zero
    assert trainer.fit()["best_top1"] == 0.0
    assert load_checkpoint(run / BEST)["epoch"] == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2


def _scripted_validation(trainer: Trainer, right_per_epoch: list[bool]) -> None:
    """Validation predicts every label right (100% top-1) or class 0 for all (10% on VAL), epoch by epoch;
    training is left alone. The run's first validated epoch reads entry 0."""
    forward, seen = trainer.model.forward, {"n": 0}
    labels = torch.tensor(VAL)

    def scripted(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        if trainer.model.training:
            return logits
        epoch, first = divmod(seen["n"], len(VAL))
        seen["n"] += len(images)
        predicted = labels[first : first + len(images)] if right_per_epoch[epoch] else torch.zeros(len(images)).long()
        return torch.nn.functional.one_hot(predicted, 10).float()

    trainer.model.forward = scripted


def test_robust_selection_keeps_the_best_pgd_epoch_and_its_state_is_restored(tmp_path: Path) -> None:
    """Clean top-1 100%, 10%, 100% and PGD top-1 25%, 50%, 50%: selecting by robustness keeps epoch 1 (better
    than epoch 0, tied by epoch 2), where clean top-1 would keep epoch 0."""
    bundle = _bundle(TRAIN_LABELS, VAL)
    run = tmp_path / "run"
    first = _trainer(run, bundle, epochs=3, select_by="robust", robust_val=4, adv_eps=0.5)
    robust = iter([25.0, 50.0, 50.0])
    first.monitor.measure = lambda model: next(robust)  # PGD top-1 of each epoch, scripted
    _scripted_validation(first, [True, False, True])
    result = first.fit()
    assert (result["best_robust_top1"], result["best_top1"]) == (50.0, 100.0)
    last, best = load_checkpoint(run / CHECKPOINT), load_checkpoint(run / BEST)
    assert best["epoch"] == 1
    assert (last["best_robust_top1"], last["last_robust_top1"]) == (50.0, 50.0)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [(r["val_robust_top1"], r["catastrophic_overfitting"]) for r in epochs] == [(25.0, False), (50.0, False),
                                                                                       (50.0, False)]  # fmt: skip
    assert last["scaler"] == first.scaler.state_dict()
    resumed = _trainer(run, bundle, epochs=3, select_by="robust", robust_val=4, adv_eps=0.5, resume=run / CHECKPOINT)
    assert (resumed.best_robust_top1, resumed.last_robust_top1, resumed.start_epoch) == (50.0, 50.0, 3)


def test_a_resumed_run_keeps_the_earlier_best_over_a_worse_first_epoch(tmp_path: Path) -> None:
    """Epoch 0 validates at 100% and the run stops in epoch 1; resumed, epoch 1 validates at 10%: the resumed
    run's first epoch is not automatically best, model_best stays epoch 0."""
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    first = _trainer(run, bundle, epochs=2)
    _scripted_validation(first, [True])
    first.model.forward = _nan_in_epoch(first, 2)  # validation stays scripted
    with pytest.raises(TrainingDiverged):
        first.fit()
    assert load_checkpoint(run / BEST)["epoch"] == 0
    resumed = _trainer(run, bundle, epochs=2, resume=run / CHECKPOINT)
    assert resumed.best_top1 == 100.0
    _scripted_validation(resumed, [False])
    assert resumed.fit()["val_top1"] == 10.0
    assert load_checkpoint(run / BEST)["epoch"] == 0
