"""What a run tells: the lines it prints (from rank 0 only; ``quiet`` keeps the warnings), the step and epoch
records of ``metrics.jsonl`` and their TensorBoard scalars, the progress bars' postfixes, the callbacks
called after each epoch's checkpoint, and the result of ``fit``. The clock and the progress bars are replaced
by recording stand-ins (builders.py, conftest.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from visionlab.engine import (
    BEST,
    CHECKPOINT,
    Callback,
    Trainer,
    load_checkpoint,
    warmup_cosine_factor,
)
from visionlab.engine import trainer as trainer_module
from visionlab.engine.checkpoint import save_checkpoint
from visionlab.runtime.distributed import DistContext

from .builders import (
    TRAIN_LABELS,
    VAL,
    Bars,
    Clock,
    Losses,
    memory_bundle,
    memory_config,
    memory_trainer,
    read_records,
)


def test_a_run_says_logs_and_shows_each_step_by_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bars: Bars
) -> None:
    """80 of 96 training images (5 steps of 16 per epoch), 7 of 20 validation images, a loss check every 2nd step
    (global steps 2, 4, 7, 9); the clock reads 0.5 s later at each look, so every step record's speed is 64
    images/s (32 images in 0.5 s, 64 in 1 s) and every epoch lasts 2 s."""
    monkeypatch.setattr(trainer_module, "time", Clock())
    run = tmp_path / "run"
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, VAL), epochs=2, limit_train=80, limit_val=7)
    trainer.callbacks = []
    seen = Losses(trainer)
    capsys.readouterr()
    result = trainer.fit()
    records = read_records(run)
    epochs = [r for r in records if r["type"] == "epoch"]
    steps = [r for r in records if r["type"] == "step"]
    expected = []
    for step, epoch, first in ((2, 0, 0), (4, 0, 0), (7, 1, 5), (9, 1, 5)):
        top1 = 100.0 * sum(seen.hits[first:step]) / (16 * (step - first))
        lr = 0.05 * warmup_cosine_factor(step, 2, 10)  # round(0.5 * 5) warmup steps of 10
        expected.append({"type": "step", "epoch": epoch, "step": step, "lr": pytest.approx(lr, rel=1e-12),
                         "loss": seen.losses[step - 1], "top1": top1, "images_per_s": 64.0})  # fmt: skip
    assert steps == expected
    assert [(r["epoch"], r["step"], r["seconds"]) for r in epochs] == [(0, 5, 2.0), (1, 10, 2.0)]
    assert (result["run_dir"], result["best_top1"]) == (str(run), max(r["val_top1"] for r in epochs))
    assert "best_robust_top1" not in result

    lines = [f"[visionlab] training simplenet (native conv) on fashion-mnist: 80 train / 7 val images, cpu, run "
             f"directory {run}"]  # fmt: skip
    for r in epochs:
        lines.append(
            f"[visionlab] epoch {r['epoch'] + 1}/2: train loss {r['train_loss']:.4f} top-1 {r['train_top1']:.2f} | "
            f"val loss {r['val_loss']:.4f} top-1 {r['val_top1']:.2f} top-5 {r['val_top5']:.2f} | 2s"
        )
    assert capsys.readouterr().err.splitlines() == lines

    assert [(b.desc, b.enabled) for b in bars.bars] == [("epoch 1/2", False), ("eval", False), ("epoch 2/2", False),
                                                        ("eval", False)]  # fmt: skip
    assert [b.closed for b in bars.bars[::2]] == [1, 1]
    shown = [p for b in bars.bars[::2] for p in b.postfixes]
    assert shown == [
        {"loss": f"{r['loss']:.3f}", "top1": f"{r['top1']:.1f}", "lr": f"{r['lr']:.3g}", "img_s": "64"} for r in steps
    ]


def test_the_loss_is_checked_and_logged_every_print_freq_steps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(memory_config(run, epochs=2, print_freq=4), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]).fit()
    assert [r["step"] for r in read_records(run) if r["type"] == "step"] == [4, 10]  # 6 steps an epoch: the 4th of each


class _Collect(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[Trainer, dict]] = []

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        assert (trainer.run_dir / CHECKPOINT).is_file()  # called after the checkpoint is written
        self.seen.append((trainer, dict(record)))


def test_epoch_records_callbacks_and_the_fit_result(tmp_path: Path) -> None:
    run, collect = tmp_path / "run", _Collect()
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, VAL), epochs=2, tensorboard=True)
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
                              "val_top5", "seconds", "step", "train_seconds", "data_wait_seconds"}  # fmt: skip
    assert all(0 <= r["data_wait_seconds"] <= r["train_seconds"] <= r["seconds"] for r in epochs)
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


@pytest.mark.parametrize("robust", [True, False])
def test_an_epoch_line_adds_pgd_and_ema_accuracies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], robust: bool
) -> None:
    monkeypatch.setattr(trainer_module, "time", Clock())
    run = tmp_path / "run"
    extra = dict(select_by="robust", robust_val=4) if robust else {}
    trainer = Trainer(memory_config(run, ema=0.9, **extra), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[])
    warning = []
    if robust:  # as if resumed after an epoch at 50% PGD top-1: this epoch's 25% is a collapse
        pgd = {id(trainer.model): 25.0, id(trainer.ema.module): 37.5}
        trainer.monitor.measure = lambda model: pgd[id(model)]
        trainer.monitor.collapsed = lambda last, now: (last, now) == (50.0, 25.0)
        trainer.last_robust_top1 = 50.0
        warning = [
            "[visionlab] WARNING: catastrophic overfitting at epoch 1: PGD-10 top-1 on 4 validation images fell from "
            "50.00% to 25.00% (the model learned to defeat its training attack only). model_best keeps the best "
            "epoch by the selection metric; more attack steps (adv_train=pgd, adv_steps) or n-fgsm make it rarer"
        ]
    capsys.readouterr()
    result = trainer.fit()
    (r,) = [x for x in read_records(run) if x["type"] == "epoch"]
    tail = f" PGD top-1 25.00 | EMA top-1 {r['val_ema_top1']:.2f} PGD 37.50" if robust else (
        f" | EMA top-1 {r['val_ema_top1']:.2f}")  # fmt: skip
    assert capsys.readouterr().err.splitlines()[1:] == [
        *warning,
        f"[visionlab] epoch 1/1: train loss {r['train_loss']:.4f} top-1 {r['train_top1']:.2f} | val loss "
        f"{r['val_loss']:.4f} top-1 {r['val_top1']:.2f} top-5 {r['val_top5']:.2f}{tail} | 2s",
    ]
    assert result.get("best_robust_top1") == (25.0 if robust else None)


def test_the_first_line_names_the_convolution_and_an_older_checkpoints_is_native(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run, conv="custom"), bundle=bundle, callbacks=[]).fit()
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("[visionlab] training simplenet (custom conv) on fashion-mnist: 96 train / 20 val images")
    state = load_checkpoint(run / BEST)
    del state["model_args"]["conv"]  # written before the convolution was a choice
    save_checkpoint(state, tmp_path / "old" / BEST)
    old = Trainer(
        memory_config(tmp_path / "tuned", epochs=1), bundle=bundle, callbacks=[], resume=tmp_path / "old" / BEST
    )
    old.train_one_epoch = old._validate = old._end_epoch = lambda *a: pytest.fail("no epoch to run")
    old.start_epoch = 1
    capsys.readouterr()
    old.fit()
    assert "training simplenet (native conv) on fashion-mnist" in capsys.readouterr().err


def test_a_line_goes_to_stderr_from_rank_zero_and_quiet_keeps_only_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL))
    trainer.log.close()
    capsys.readouterr()
    trainer._say("one")
    trainer._say("two", warning=True)
    trainer.cfg = dataclasses.replace(trainer.cfg, quiet=True)
    trainer._say("three")
    trainer._say("four", warning=True)
    trainer.dist = DistContext(rank=1, world_size=2)
    trainer._say("five", warning=True)
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "[visionlab] one\n[visionlab] two\n[visionlab] four\n")


def test_where_a_run_trains(tmp_path: Path) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), batch_size=64)
    trainer.log.close()
    assert trainer._where() == "cpu"
    trainer.dist = DistContext(rank=1, world_size=4)
    assert trainer._where() == "4 processes (cpu, DDP, global batch 64)"


def test_without_tensorboard_no_event_writer_is_made(tmp_path: Path) -> None:
    trainer = Trainer(
        memory_config(tmp_path / "run", tensorboard=False), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]
    )
    trainer.log.close()
    assert trainer.log.writer is None and not (tmp_path / "run" / "tensorboard").exists()


def test_a_run_that_ends_in_an_error_still_closes_its_log(tmp_path: Path) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), epochs=1)
    closed = []
    trainer.log.close = lambda: closed.append(True)
    trainer._validate = lambda epoch: 1 / 0
    with pytest.raises(ZeroDivisionError):
        trainer.fit()
    assert closed == [True]
