"""A training loss that is not finite (``engine/divergence.py``): ``TrainingDiverged`` and its advice, and the run
stopping at the first logged step (every ``print_freq`` steps of an epoch) at or after a NaN or infinite loss,
or at the end of an epoch whose last steps turned bad, naming the epoch and the step and leaving what earlier
epochs saved as it was (or saying that nothing was saved).

A loss that is bad at an unlogged step only (finite again at the next logged one) is caught there too, through the
epoch's running loss sum. In the scripted cases the losses are made bad by adding NaN or inf to the objective's
loss at given global steps: the value is bad, the gradients stay finite, so the steps after it are finite again
unless scripted too. 6 steps an epoch (96 images, batch 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from visionlab.engine import (
    BEST,
    CHECKPOINT,
    ClassificationTask,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
)
from visionlab.engine import trainer as trainer_module

from .builders import (
    STEPS_PER_EPOCH,
    TRAIN_LABELS,
    VAL,
    file_config,
    memory_bundle,
    memory_trainer,
    nan_in_epoch,
    records_of,
)

NAN, INF = float("nan"), float("inf")


class BadAt:
    """Wraps a trainer's objective: its loss plus ``bad`` at the given global steps (1-based); counts the steps
    and, at the first bad one, keeps the bytes of the run's files as they are on disk then."""

    def __init__(self, trainer: Trainer, bad: float, steps: set[int]) -> None:
        self.task, self.bad, self.steps, self.calls, self.on_disk = trainer.task, bad, steps, 0, {}
        self.run = trainer.run_dir
        trainer.task = self

    def __call__(self, model, images, target):
        self.calls += 1
        loss, logits = self.task(model, images, target)
        if self.calls not in self.steps:
            return loss, logits
        if not self.on_disk:
            names = (CHECKPOINT, BEST, "metrics.jsonl")
            self.on_disk = {name: (self.run / name).read_bytes() for name in names if (self.run / name).exists()}
        return loss + self.bad, logits


def _trainer(run: Path, print_freq: int, epochs: int) -> Trainer:
    cfg = TrainConfig(data="fashion-mnist", out=str(run), epochs=epochs, batch_size=16, lr=0.05, warmup=0.5,
                      workers=0, progress=False, tensorboard=False, print_freq=print_freq, seed=7)  # fmt: skip
    return Trainer(cfg, bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[])


def _stop(trainer: Trainer, bad: float, steps: set[int]) -> tuple[TrainingDiverged, BadAt]:
    poisoned = BadAt(trainer, bad, steps)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    return info.value, poisoned


CAUGHT = "(not logged: the epoch's running loss caught it at step {})"


@pytest.mark.parametrize(
    ("bad", "steps", "print_freq", "stop", "where"),
    [
        (INF, {2}, 2, 2, "step 2"),  # logged at steps 2, 4 and 6
        (NAN, {2}, 2, 2, "step 2"),
        (INF, {1, 2, 3, 4, 5, 6}, 2, 2, "step 2"),  # bad from step 1 on: caught at 2, not at 1, not at 6
        (INF, {3}, 2, 4, "step 3 " + CAUGHT.format(4)),  # bad at an unlogged step only
        (NAN, {3}, 2, 4, "step 3 " + CAUGHT.format(4)),
        (INF, {2}, 4, 4, "one of steps 1 to 3 " + CAUGHT.format(4)),  # logged at step 4 only
        (NAN, {1}, 1, 1, "step 1"),  # every step logged
        (INF, {5}, 4, 6, "step 6"),  # after the epoch's last logged step: the end of the epoch catches it
    ],
)
def test_a_bad_loss_stops_at_the_first_logged_step_at_or_after_it(
    tmp_path: Path, bad: float, steps: set[int], print_freq: int, stop: int, where: str
) -> None:
    trainer = _trainer(tmp_path / "run", print_freq, epochs=1)
    error, poisoned = _stop(trainer, bad, steps)
    value = "inf" if bad == INF else "nan"
    assert error.detail == f"loss is {value} at epoch 1, {where}; stopping (no checkpoint was written)"
    assert poisoned.calls == trainer.step == stop  # no step after the one that stopped it
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"type": "step"') == (stop - 1) // print_freq


def _strict_json(line: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in metrics.jsonl: {line}")

    return json.loads(line, parse_constant=refuse)


def test_stopping_keeps_what_earlier_epochs_saved(tmp_path: Path) -> None:
    """Bad at unlogged step 8 (the 2nd of epoch 2; logged at the 4th step of each epoch): the run stops at step 10,
    naming the unlogged steps of epoch 2 before it; checkpoints and metrics.jsonl are byte for byte what was on
    disk at the bad step, every record finite and the checkpoint loadable."""
    run = tmp_path / "run"
    error, poisoned = _stop(_trainer(run, print_freq=4, epochs=2), INF, {8})
    assert error.detail == (
        f"loss is inf at epoch 2, one of steps 7 to 9 {CAUGHT.format(10)}; stopping (the last good checkpoint "
        f"{run / CHECKPOINT} is untouched)"
    )
    assert poisoned.calls == 10 and set(poisoned.on_disk) == {CHECKPOINT, BEST, "metrics.jsonl"}
    for name, content in poisoned.on_disk.items():
        assert (run / name).read_bytes() == content, name
    records = [_strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["type"], r["epoch"], r["step"]) for r in records] == [("step", 0, 4), ("epoch", 0, 6)]
    state = load_checkpoint(run / CHECKPOINT)  # loads: the run can resume from it
    assert (state["epoch"], state["step"]) == (0, 6)


def test_divergence_advice_names_the_fields_or_the_callers_names_for_them() -> None:
    err = TrainingDiverged("loss is nan at epoch 2, step 7")
    assert str(err) == "loss is nan at epoch 2, step 7. Lower lr, raise warmup or keep clip_grad above 0."
    assert err.detail == "loss is nan at epoch 2, step 7"
    flags = {"lr": "--lr", "warmup": "--warmup", "clip_grad": "--clip-grad"}
    assert err.advice(flags) == "Lower --lr, raise --warmup or keep --clip-grad above 0."
    assert err.advice({"lr": "--lr"}) == "Lower --lr, raise warmup or keep clip_grad above 0."


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_bad_loss_in_an_epochs_last_steps_stops_training_and_keeps_the_checkpoints(tmp_path: Path, bad: str) -> None:
    """print_freq=4 checks the loss at step 4 of each 6-step epoch only; a NaN or infinite loss at steps 5 and 6
    of epoch 2 must be caught by the end-of-epoch check, before epoch 2 writes any checkpoint."""
    run = tmp_path / "run"
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, list(range(10)) * 2), epochs=3, print_freq=4)
    forward, calls, on_disk = trainer.model.forward, {"n": 0}, {}

    def poisoned(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        if not trainer.model.training:
            return logits
        calls["n"] += 1
        if calls["n"] <= STEPS_PER_EPOCH + 4:
            return logits
        if not on_disk:  # epoch 1's checkpoints, as the bad steps begin
            on_disk.update({name: (run / name).read_bytes() for name in (CHECKPOINT, BEST)})
        if bad == "nan":
            return logits * float("nan")
        # Every class but 0 at -inf: the cross-entropy of any sample not labelled 0 is +inf, the gradients finite.
        return logits.masked_fill(torch.arange(10) != 0, float("-inf"))

    trainer.model.forward = poisoned
    message = rf"loss is {bad} at epoch 2, step 12; .*checkpoint\.pth\.tar is untouched"
    with pytest.raises(TrainingDiverged, match=message):
        trainer.fit()
    assert calls["n"] == 2 * STEPS_PER_EPOCH  # it stopped at the end of epoch 2, not later
    assert {name: (run / name).read_bytes() for name in (CHECKPOINT, BEST)} == on_disk
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 0
    assert [r["epoch"] for r in records_of(run, "epoch")] == [0]


def test_divergence_before_any_checkpoint_says_none_was_written(tmp_path: Path) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), epochs=2, print_freq=1)
    trainer.model.forward = nan_in_epoch(trainer, 1)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    assert info.value.detail == "loss is nan at epoch 1, step 1; stopping (no checkpoint was written)"
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NanFromCall8(ClassificationTask):  # 6 steps per epoch: the loss turns NaN at step 2 of epoch 2
        calls = 0

        def __call__(self, model, images, target):
            self.calls += 1
            loss, logits = super().__call__(model, images, target)
            return (loss * float("nan") if self.calls >= 8 else loss), logits

    trainer = Trainer(
        file_config(tiny_fmnist, tmp_path / "run", epochs=3), task=NanFromCall8(torch.nn.CrossEntropyLoss())
    )
    before = None
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2.*checkpoint.*untouched"):
        original_save = trainer_module.save_checkpoint

        def remember(state, path):
            nonlocal before
            original_save(state, path)
            before = (tmp_path / "run" / CHECKPOINT).read_bytes()

        monkeypatch.setattr(trainer_module, "save_checkpoint", remember)
        trainer.fit()
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == before
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 0
