"""The trainer's loop pinned to values (found by mutation testing, docs/TESTING.md): what ``fit`` and
``train_one_epoch`` say, log and show per step under a scripted clock, what a rank of a world of two reduces and
prints, what ``_validate`` asks ``evaluate`` and the robust monitor and what it returns, ``_say``, ``_where`` and
the DataLoader workers' seeds. The progress display and the clock are replaced by recording stand-ins; the
world of two by one whose collectives are identities."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch.utils.data import TensorDataset

from visionlab.data import DataBundle
from visionlab.data.memory import parse_augment
from visionlab.engine import (
    BEST,
    CHECKPOINT,
    Callback,
    CheckpointError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    warmup_cosine_factor,
)
from visionlab.engine import evaluation as evaluation_module
from visionlab.engine import trainer as trainer_module
from visionlab.engine.checkpoint import EMA, capture_rng, save_checkpoint
from visionlab.engine.loaders import RankSeed
from visionlab.errors import ConfigError
from visionlab.models import build_model
from visionlab.models.finetune import split_head
from visionlab.runtime import device as device_module
from visionlab.runtime.distributed import DistContext

from ..conftest import IdentityWorld
from .test_trainer_stages import VAL, _trainer
from .test_trainer_values import TRAIN_LABELS, _bundle


class Bar:
    def __init__(self, iterable: Any, desc: str, enabled: bool) -> None:
        self.iterable, self.desc, self.enabled, self.postfixes, self.closed = iterable, desc, enabled, [], 0

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **values: str) -> None:
        self.postfixes.append(values)

    def close(self) -> None:
        self.closed += 1


class Bars:
    """Stands in for ``progress``: every bar it makes, with its description, whether enabled, postfixes, closes."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []

    def __call__(self, iterable: Any, *, desc: str, enabled: bool = True) -> Bar:
        self.bars.append(Bar(iterable, desc, enabled))
        return self.bars[-1]


class Clock:
    """``time`` for the trainer: ``perf_counter`` advances 0.5 s at every reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.5
        return self.now


class Losses:
    """Wraps a trainer's objective, keeping each step's loss and its batch's top-1 hits."""

    def __init__(self, trainer: Trainer) -> None:
        self.task, self.losses, self.hits = trainer.task, [], []
        trainer.task = self

    def __call__(self, model, images, target):
        loss, logits = self.task(model, images, target)
        self.losses.append(float(loss.detach()))
        self.hits.append(int((logits.argmax(1) == target).sum()))
        return loss, logits


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Bars:
    bars = Bars()
    monkeypatch.setattr(trainer_module, "progress_bar", bars)  # the epochs' bars
    monkeypatch.setattr(evaluation_module, "progress_bar", bars)  # validation's
    return bars


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_says_logs_and_shows_each_step_by_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bars: Bars
) -> None:
    """80 of 96 training images (5 steps of 16 per epoch), 7 of 20 validation images, a loss check every 2nd step
    (global steps 2, 4, 7, 9); the clock reads 0.5 s later at each look, so every step record's speed is 64
    images/s (32 images in 0.5 s, 64 in 1 s) and every epoch lasts 2 s."""
    monkeypatch.setattr(trainer_module, "time", Clock())
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, VAL), epochs=2, limit_train=80, limit_val=7)
    trainer.callbacks = []
    seen = Losses(trainer)
    capsys.readouterr()
    result = trainer.fit()
    records = _records(run)
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


def test_a_run_that_ends_in_an_error_still_closes_its_log(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), epochs=1)
    closed = []
    trainer.log.close = lambda: closed.append(True)
    trainer._validate = lambda epoch: 1 / 0
    with pytest.raises(ZeroDivisionError):
        trainer.fit()
    assert closed == [True]


def test_training_starts_in_train_mode_whatever_mode_the_model_was_left_in(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), epochs=1)
    forward, modes = trainer.model.forward, []
    trainer.model.forward = lambda images: modes.append(trainer.model.training) or forward(images)
    trainer.model.eval()
    trainer.train_one_epoch(0)
    trainer.log.close()
    assert modes == [True] * 6


class TwoRanks(IdentityWorld):
    """A world of two without a process group: collectives are identities; ``all_reduce`` records what it is
    given (dtype, shape, values)."""

    reduced: ClassVar[list[tuple[torch.dtype, tuple[int, ...], list]]] = []

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        self.reduced.append((tensor.dtype, tuple(tensor.shape), tensor.tolist()))
        return tensor


def test_rank_one_of_two_reduces_its_sums_shows_the_mean_loss_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bars: Bars
) -> None:
    """Rank 1 trains on 8 of each global batch of 16 (6 steps) and validates VAL[1::2] (10 images); the loss it
    shows is the all-reduced sum over the world divided by 2 (here its own loss, halved)."""
    TwoRanks.reduced = []
    world = TwoRanks(rank=1, world_size=2)
    cfg = TrainConfig(data="fashion-mnist", out=str(tmp_path / "run"), epochs=1, batch_size=16, lr=0.05, warmup=0.5,
                      workers=0, progress=True, tensorboard=False, print_freq=2, seed=7)  # fmt: skip
    trainer = Trainer(cfg, bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[], dist=world)
    seen = Losses(trainer)
    capsys.readouterr()
    trainer.fit()
    assert capsys.readouterr().err == ""  # not rank 0: no line, not even the epoch's
    assert not (tmp_path / "run").exists()
    assert [(b.desc, b.enabled) for b in bars.bars] == [("epoch 1/1", False), ("eval", False)]
    assert [p["loss"] for p in bars.bars[0].postfixes] == [f"{seen.losses[i] / 2:.3f}" for i in (1, 3, 5)]
    f64, i64 = torch.float64, torch.int64
    assert [(dtype, shape) for dtype, shape, _ in TwoRanks.reduced] == [
        (f64, (2,)), (f64, (2,)), (f64, (2,)), (i64, (3,)), (f64, ()),  # the checks of steps 2, 4, 6; epoch's sums
        (i64, (3,)), (f64, ()),  # validation's sums
    ]  # fmt: skip
    # each check reduces the step's loss and the epoch's running loss sum (8 images a step on this rank)
    checks = [[seen.losses[i], sum(loss * 8 for loss in seen.losses[: i + 1])] for i in (1, 3, 5)]
    assert [TwoRanks.reduced[k][2] for k in (0, 1, 2)] == checks
    assert TwoRanks.reduced[3][2] == [sum(seen.hits), TwoRanks.reduced[3][2][1], 48]
    assert TwoRanks.reduced[5][2][2] == 10


class Monitor:
    """Stands in for the robust monitor: scripted PGD top-1 per model, a collapse verdict, the calls recorded."""

    steps, n, val = 10, 9, list(range(7))

    def __init__(self, by_model: dict[int, float], collapsed: bool) -> None:
        self.by_model, self.verdict, self.calls = by_model, collapsed, []

    def measure(self, model: torch.nn.Module) -> float:
        self.calls.append(("measure", id(model)))
        return self.by_model[id(model)]

    def collapsed(self, last: float | None, now: float) -> bool:
        self.calls.append(("collapsed", last, now))
        return self.verdict


@pytest.mark.parametrize("collapsed", [True, False])
def test_validation_asks_evaluate_and_the_monitor_for_both_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], collapsed: bool
) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), ema=0.9, tta=True, channels_last=True,
                       progress=True, quiet=True)  # fmt: skip
    trainer.log.close()
    calls = []

    def evaluate(model, loader, device, **kw):
        calls.append((model, loader, device, kw))
        return {"loss": 1.5, "top1": 40.0, "top5": 90.0, "n": 20} if model is trainer.model else {
            "loss": 1.25, "top1": 45.0, "top5": 95.0, "n": 20}  # fmt: skip

    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    ema = trainer.ema.module
    trainer.monitor = Monitor({id(trainer.model): 12.5, id(ema): 30.0}, collapsed)
    trainer.last_robust_top1 = 50.0
    capsys.readouterr()
    val = trainer._validate(1)
    assert val == {"loss": 1.5, "top1": 40.0, "top5": 90.0, "n": 20, "ema_top1": 45.0, "ema_top5": 95.0,
                   "ema_loss": 1.25, "ema_robust_top1": 30.0, "robust_top1": 12.5, "collapsed": collapsed}  # fmt: skip
    options = dict(tta=True, amp=False, channels_last=True, dist=trainer.dist)
    assert calls == [
        (trainer.model, trainer.val_loader, trainer.device, {**options, "progress": True}),
        (ema, trainer.val_loader, trainer.device, {**options, "progress": False}),
    ]
    assert trainer.monitor.calls == [("measure", id(ema)), ("measure", id(trainer.model)), ("collapsed", 50.0, 12.5)]
    assert trainer.last_robust_top1 == 12.5
    warning = (
        "[visionlab] WARNING: catastrophic overfitting at epoch 2: PGD-10 top-1 on 7 validation images fell from "
        "50.00% to 12.50% (the model learned to defeat its training attack only). model_best keeps the best epoch by "
        "the selection metric; multi-step PGD training (adv_train=pgd) does not do this\n"
    )
    assert capsys.readouterr().err == (warning if collapsed else "")  # printed even when quiet


def test_validation_without_ema_or_monitor_is_the_clean_metrics(tmp_path: Path, monkeypatch) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), amp=True)
    trainer.log.close()
    calls = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda model, *a, **kw: calls.append(kw) or {"top1": 5.0})
    assert trainer._validate(0) == {"top1": 5.0}
    assert calls == [dict(tta=False, amp=True, channels_last=False, progress=False, dist=trainer.dist)]
    assert trainer.last_robust_top1 is None


def test_a_line_goes_to_stderr_from_rank_zero_and_quiet_keeps_only_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL))
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
    trainer = _trainer(tmp_path / "run", _bundle(TRAIN_LABELS, VAL), batch_size=64)
    trainer.log.close()
    assert trainer._where() == "cpu"
    trainer.dist = DistContext(rank=1, world_size=4)
    assert trainer._where() == "4 processes (cpu, DDP, global batch 64)"


def test_dataloader_workers_of_rank_r_are_seeded_r_large_primes_apart() -> None:
    torch.manual_seed(1234)
    random.seed(99)
    RankSeed(DistContext(0, 3))(0)  # rank 0: both streams untouched
    assert (torch.initial_seed(), random.random()) == (1234, random.Random(99).random())
    RankSeed(DistContext(2, 3))(1)
    assert torch.initial_seed() == 1234 + 2 * 1_000_003
    assert random.random() == random.Random(1234 + 2 * 1_000_003).random()


def _tensors_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_epochs_end_records_every_metric_and_keeps_the_best_of_each_model(tmp_path: Path) -> None:
    """Epoch 0 sets the bests (clean 40%, EMA 45%); epoch 1 is worse on both: model_best and model_ema stay
    epoch 0's, the last checkpoint moves on. The weights are changed between the epochs, so the files tell them
    apart."""
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, VAL), ema=0.9)
    written, ends = [], []
    trainer.log.write = lambda record, step, scalars: written.append((dict(record), step, scalars))
    trainer.callbacks = [type("Ends", (Callback,), {"on_epoch_end": lambda self, t, r: ends.append((t, dict(r)))})()]
    trainer.step = 6
    train = {"loss": 2.0, "top1": 30.0, "top5": 70.0, "n": 96}
    val = {"loss": 1.5, "top1": 40.0, "top5": 90.0, "n": 20, "robust_top1": 12.5, "collapsed": True, "ema_top1": 45.0,
           "ema_top5": 95.0, "ema_loss": 1.25, "ema_robust_top1": 30.0}  # fmt: skip
    lr = trainer.optimizer.param_groups[0]["lr"]
    record = trainer._end_epoch(0, train, val, 3.5)
    assert record == {
        "type": "epoch", "epoch": 0, "lr": lr, "train_loss": 2.0, "train_top1": 30.0, "train_top5": 70.0,
        "val_loss": 1.5, "val_top1": 40.0, "val_top5": 90.0, "seconds": 3.5, "step": 6, "val_robust_top1": 12.5,
        "catastrophic_overfitting": True, "val_ema_top1": 45.0, "val_ema_top5": 95.0, "val_ema_loss": 1.25,
        "val_ema_robust_top1": 30.0,
    }  # fmt: skip
    scalars = {
        "val/top1": 40.0, "val/top5": 90.0, "val/loss": 1.5, "train/top1": 30.0, "train/top5": 70.0,
        "train/epoch_loss": 2.0, "val/robust_top1": 12.5, "val/ema_top1": 45.0, "val/ema_top5": 95.0,
        "val/ema_loss": 1.25, "val/ema_robust_top1": 30.0,
    }  # fmt: skip
    assert written == [(record, 1, scalars)] and ends == [(trainer, record)]
    epoch0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ema0 = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    with torch.no_grad():
        for p in [*trainer.model.parameters(), *trainer.ema.module.parameters()]:
            p.add_(1.0)
    worse = {**val, "top1": 30.0, "ema_top1": 40.0}
    trainer._end_epoch(1, train, worse, 1.0)
    best, ema, last = (load_checkpoint(run / name) for name in (BEST, EMA, CHECKPOINT))
    assert (best["epoch"], ema["epoch"], last["epoch"]) == (0, 0, 1)
    assert _tensors_equal(best["model"], epoch0) and _tensors_equal(ema["model"], ema0)
    assert _tensors_equal(last["model"], trainer.model.state_dict())
    assert "optimizer" in last and "optimizer" not in best and "optimizer" not in ema
    assert [w[1] for w in written] == [1, 2] and len(ends) == 2


def test_an_amp_step_runs_in_bfloat16_and_counts_one_step(tmp_path: Path) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    images, target = bundle.train.tensors[0][:16], bundle.train.tensors[1][:16]
    for amp, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        trainer = _trainer(tmp_path / str(amp), bundle, amp=amp)
        trainer.log.close()
        loss, logits = trainer._train_step(images, target)
        assert (loss.dtype, logits.dtype, trainer.step, trainer.scheduler.last_epoch) == (torch.float32, dtype, 1, 1)


# --start-epoch fast-forwards the schedule before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_the_backbone_freezes_and_unfreezes_by_the_epoch_alone(tmp_path: Path, capsys) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)

    def backbone_trains(trainer: Trainer) -> bool:
        backbone, head = split_head(trainer.model)
        assert all(p.requires_grad for _, p in head)
        trains = {p.requires_grad for _, p in backbone}
        assert len(trains) == 1
        return trains.pop()

    trainer = _trainer(tmp_path / "a", bundle, model="improved", freeze_backbone=True, unfreeze_at=2)
    trainer.log.close()
    assert capsys.readouterr().err == ""  # frozen from the start: nothing to say
    assert not backbone_trains(trainer)
    trainer._freeze_for_epoch(1)
    assert not backbone_trains(trainer) and capsys.readouterr().err == ""
    trainer._freeze_for_epoch(2)
    assert backbone_trains(trainer)
    assert capsys.readouterr().err == "[visionlab] epoch 3: backbone unfrozen\n"
    trainer._freeze_for_epoch(1)
    assert not backbone_trains(trainer)
    assert capsys.readouterr().err == "[visionlab] epoch 2: backbone frozen\n"

    late = _trainer(tmp_path / "b", bundle, model="improved", freeze_backbone=True, unfreeze_at=2, start_epoch=2)
    late.log.close()
    assert backbone_trains(late)
    assert capsys.readouterr().err == "[visionlab] epoch 3: backbone unfrozen\n"  # trained from its first epoch

    always = _trainer(tmp_path / "c", bundle, model="improved", freeze_backbone=True)
    always.log.close()
    always._freeze_for_epoch(50)
    assert not backbone_trains(always)
    plain = _trainer(tmp_path / "d", bundle, model="improved")
    plain.log.close()
    assert all(p.requires_grad for p in plain.model.parameters())


# ------------------------------------------------------------------------------------------ construction
def _cfg(out: Path | None, **kw: Any) -> TrainConfig:
    base = dict(data="fashion-mnist", out=str(out) if out else None, epochs=1, batch_size=16, lr=0.05, warmup=0.5,
                workers=0, progress=False, tensorboard=False, print_freq=2, seed=7)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_construction_loads_the_configured_data_and_seeds_the_weights_and_the_data_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, bundle = [], _bundle(TRAIN_LABELS, VAL)
    monkeypatch.setattr(trainer_module, "load_dataset", lambda spec, **kw: loaded.append((spec, kw)) or bundle)
    cfg = _cfg(tmp_path / "run", data="fashion-mnist:/nowhere", data_root="/roots", image_size=28, check_images=False,
               cache_images=True, seed=3)  # fmt: skip
    trainer = Trainer(cfg)
    trainer.log.close()
    assert loaded == [
        ("fashion-mnist:/nowhere", dict(data_root="/roots", image_size=28, check_images=False, cache=True))
    ]
    args = dict(trainer.model_args)
    torch.manual_seed(3)
    fresh = build_model(args.pop("name"), **args)
    assert _tensors_equal(fresh.state_dict(), trainer.model.state_dict())  # drawn right after seeding
    assert trainer.generator.initial_seed() == 3 and torch.equal(
        trainer.generator.get_state(), torch.Generator().manual_seed(3).get_state()
    )
    assert trainer.callbacks == []  # PlotCurves is the CLI's to pass (visionlab.report)
    assert (trainer.best_robust_top1, trainer.last_robust_top1, trainer.best_ema) == (0.0, None, None)
    assert (trainer.start_epoch, trainer.step, trainer.best_top1, trainer.full_resume) == (0, 0, 0.0, False)
    assert trainer.resume_path is None and trainer.train_model is trainer.model and trainer._backbone_frozen is None
    mine: list[Callback] = []
    kept = Trainer(_cfg(tmp_path / "other"), bundle=bundle, callbacks=mine).callbacks
    assert kept == [] and kept is not mine  # a copy, and empty is not the default


def test_deterministic_algorithms_are_switched_on_only_when_asked(tmp_path: Path) -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    benchmark, bundle = torch.backends.cudnn.benchmark, _bundle(TRAIN_LABELS, VAL)
    try:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        Trainer(_cfg(tmp_path / "a", deterministic=False), bundle=bundle, callbacks=[]).log.close()
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        Trainer(_cfg(tmp_path / "b", deterministic=True), bundle=bundle, callbacks=[]).log.close()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = benchmark


def test_amp_on_a_cpu_without_bf16_prints_the_whole_warning_even_when_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    Trainer(_cfg(tmp_path / "run", amp=True, quiet=True), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[]).log.close()
    assert capsys.readouterr().err == f"[visionlab] WARNING: {trainer_module.AMP_CPU_WARNING}\n"


def test_more_epochs_than_a_checkpoint_planned_is_refused_in_full(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run), bundle=bundle, callbacks=[]).fit()
    last = run / CHECKPOINT
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(tmp_path / "more", epochs=2), bundle=bundle, callbacks=[], resume=last)
    assert str(info.value) == (
        f"epochs: 2 epochs asked, but {last} belongs to a run planned for 1: its learning-rate schedule ends there, "
        "so an exact resume would train the extra epochs at learning rate 0. To train longer, fine-tune from "
        f"{run / BEST} (weights only) with a new schedule"
    )
    tuned = Trainer(_cfg(tmp_path / "tuned", epochs=2), bundle=bundle, callbacks=[], resume=run / BEST)
    assert not tuned.full_resume and tuned.scheduler.total_steps == 12  # weights only: a new 2-epoch schedule
    state = load_checkpoint(last)
    del state["config"]["epochs"]  # a checkpoint that does not say its plan: the configuration's is taken
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    assert Trainer(_cfg(tmp_path / "old2", epochs=2), bundle=bundle, callbacks=[],
                   resume=tmp_path / "old" / CHECKPOINT).full_resume  # fmt: skip


def test_pretrained_weights_and_a_checkpoint_to_fine_tune_from_are_refused_together(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run), bundle=bundle, callbacks=[]).fit()
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(tmp_path / "a", pretrained=missing), bundle=bundle, callbacks=[], resume=run / BEST)
    assert str(info.value) == (
        f"pretrained: fine-tuning from {run / BEST} already gives the weights: pretrained weights or a checkpoint to "
        "fine-tune from, not both"
    )
    exact = Trainer(_cfg(run, pretrained=missing), bundle=bundle, callbacks=[], resume=run / CHECKPOINT)
    assert exact.full_resume and exact.pretrained is None  # the checkpoint has the weights: the file is not read


def test_a_checkpoint_without_the_later_fields_resumes_with_their_defaults(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    for key in ("best_robust_top1", "last_robust_top1", "best_ema", "rng_ranks"):
        del state[key]
    state["epoch"], state["best_top1"] = 0, 12.5
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    resumed = Trainer(_cfg(None, epochs=2), bundle=bundle, callbacks=[], resume=tmp_path / "old" / CHECKPOINT)
    resumed.log.close()
    assert (resumed.best_robust_top1, resumed.last_robust_top1, resumed.best_ema) == (0.0, None, None)
    assert (resumed.start_epoch, resumed.step, resumed.best_top1) == (1, 12, 12.5)
    assert resumed.run_dir == tmp_path / "old"  # no --out: the checkpoint's own directory


def test_a_rank_restores_its_own_random_state_or_reseeds_on_another_world_size(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    state["epoch"] = 0
    own = [capture_rng(torch.Generator().manual_seed(100 + r)) for r in range(2)]
    save_checkpoint({**state, "rng_ranks": own}, tmp_path / "two" / CHECKPOINT)
    save_checkpoint(state, tmp_path / "one" / CHECKPOINT)

    def resume(path: Path, rank: int) -> Trainer:
        world = TwoRanks(rank=rank, world_size=2)
        return Trainer(_cfg(tmp_path / "x", epochs=2), bundle=bundle, callbacks=[], dist=world, resume=path)

    second = resume(tmp_path / "two" / CHECKPOINT, 1)  # same world size: rank 1's own state
    assert second.generator.initial_seed() == 101 and torch.equal(torch.get_rng_state(), own[1]["torch"])
    assert resume(tmp_path / "two" / CHECKPOINT, 0).generator.initial_seed() == 100
    second = resume(tmp_path / "one" / CHECKPOINT, 1)  # saved by one process: its state, then rank 1's own seed
    assert second.generator.initial_seed() == 7 and torch.initial_seed() == 7 + 12 + 1_000_003
    first = resume(tmp_path / "one" / CHECKPOINT, 0)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"]) and first.generator.initial_seed() == 7


def test_batch_augmentation_goes_on_a_copy_of_an_in_memory_training_set(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path / "run", data=tiny_fmnist, augment="flip,crop=2,erase=0.5"), callbacks=[])
    trainer.log.close()
    augmented, original = trainer.train_loader.dataset, trainer.bundle.train
    assert augmented is not original and augmented.batch_augment == parse_augment("flip,crop=2,erase=0.5")
    assert original.batch_augment != augmented.batch_augment  # the bundle keeps its own
    assert torch.equal(augmented.images, original.images)
    plain = Trainer(_cfg(tmp_path / "plain", data=tiny_fmnist), callbacks=[])
    plain.log.close()
    assert plain.train_loader.dataset is plain.bundle.train
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(tmp_path / "files", augment="flip"), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[])
    assert str(info.value) == (
        "augment: applies to datasets held in memory (fashion-mnist, cifar10), not fashion-mnist: its files are "
        "augmented by the MiniPlaces recipe"
    )


def test_model_errors_name_the_checkpoint_or_the_model_kwargs(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / BEST)
    state["model_args"]["widt"] = [8]
    save_checkpoint(state, tmp_path / "bad" / BEST)
    args = dict(state["model_args"])
    with pytest.raises(TypeError) as refused:
        build_model(args.pop("name"), **args)
    with pytest.raises(CheckpointError) as info:
        Trainer(_cfg(tmp_path / "a"), bundle=bundle, callbacks=[], resume=tmp_path / "bad" / BEST)
    assert str(info.value) == f"{tmp_path / 'bad' / BEST}: its model cannot be rebuilt ({refused.value})"
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(tmp_path / "b", model_kwargs={"widt": [8]}), bundle=bundle, callbacks=[])
    assert str(info.value) == f"model_kwargs: simplenet: {refused.value}"
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(tmp_path / "c", model="improved", sync_bn=True), bundle=bundle, callbacks=[])
    assert str(info.value) == (
        "sync_bn: needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only (here: cpu); on the CPU each process "
        "normalizes with the statistics of its own share of the batch"
    )


def test_batch_norm_stays_plain_without_sync_bn_in_a_world_of_two(tmp_path: Path) -> None:
    world = TwoRanks(rank=0, world_size=2)
    trainer = Trainer(_cfg(tmp_path / "run", model="improved"), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[],
                      dist=world)  # fmt: skip
    trainer.log.close()
    kinds = {type(m) for m in trainer.model.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.SyncBatchNorm not in kinds


def test_channels_last_puts_the_model_in_that_layout(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path / "run", channels_last=True), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[])
    trainer.log.close()
    convs = [p for p in trainer.model.parameters() if p.ndim == 4 and min(p.shape[1:]) > 1]  # else both layouts
    assert convs
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)


def test_the_monitor_runs_on_the_trainers_device_and_world(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path / "run", select_by="robust", robust_val=4), bundle=_bundle(TRAIN_LABELS, VAL),
                      callbacks=[])  # fmt: skip
    trainer.log.close()
    assert trainer.monitor.device == trainer.device and trainer.monitor.dist is trainer.dist


@pytest.mark.parametrize("taken", [[BEST], [CHECKPOINT, BEST]])
def test_a_directory_with_another_runs_checkpoints_is_refused_in_full(tmp_path: Path, taken: list[str]) -> None:
    run = tmp_path / "deep" / "er" / "run"
    run.mkdir(parents=True)
    for name in taken:
        (run / name).write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        Trainer(_cfg(run), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[])
    assert str(info.value) == (
        f"out: {run} already holds a run ({', '.join(taken)}): writing there would replace it. Resume it with "
        f"--resume {run / CHECKPOINT}, or choose another directory"
    )
    fresh = tmp_path / "new" / "nested" / "run"
    Trainer(_cfg(fresh), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[]).log.close()  # parents made
    Trainer(_cfg(fresh), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[]).log.close()  # an existing empty run dir
    assert (fresh / "config.yaml").is_file()


# ------------------------------------------------------------------------------------------ module helpers
@pytest.mark.parametrize("found", ["/opt/bin/cxx", "g++", "clang++", "c++"])
def test_inductor_on_the_cpu_takes_the_first_compiler_found(monkeypatch: pytest.MonkeyPatch, found: str) -> None:
    order = ["/opt/bin/cxx", "g++", "clang++", "c++"]
    monkeypatch.setenv("CXX", "/opt/bin/cxx")
    asked: list[str] = []
    monkeypatch.setattr(
        device_module.shutil, "which", lambda name: asked.append(name) or (name if name == found else None)
    )
    device_module.check_compile("inductor", torch.device("cpu"))
    assert asked == order[: order.index(found) + 1]


def test_inductor_without_any_compiler_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(device_module.shutil, "which", lambda name: asked.append(name))
    with pytest.raises(ConfigError) as info:
        device_module.check_compile("inductor", torch.device("cpu"))
    assert str(info.value) == (
        "compile: the inductor backend compiles C++ for the CPU, and no C++ compiler was found (set CXX, or install "
        "g++: apt-get install g++); --compile aot_eager needs none (it captures the graph, without speed-up)"
    )
    assert asked == ["g++", "clang++", "c++"]  # an unset CXX is not looked up
    asked.clear()
    device_module.check_compile("inductor", torch.device("cuda"))  # GPU code needs no C++ compiler
    device_module.check_compile("aot_eager", torch.device("cpu"))
    assert asked == []


def test_the_cpu_flags_are_read_from_proc_cpuinfo_by_default() -> None:
    assert device_module.cpu_has_native_bf16() is device_module.cpu_has_native_bf16("/proc/cpuinfo")


def test_a_full_state_keeps_each_ranks_random_state_and_the_world_size(tmp_path: Path) -> None:
    bundle = _bundle(TRAIN_LABELS, VAL)
    two = Trainer(_cfg(tmp_path / "two"), bundle=bundle, callbacks=[], dist=TwoRanks(rank=0, world_size=2))
    two.log.close()
    state = two._state(0, full=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2  # every rank's (here the same, gathered twice)
    assert all(torch.equal(r["torch"], state["rng"]["torch"]) for r in state["rng_ranks"])
    one = Trainer(_cfg(tmp_path / "one"), bundle=bundle, callbacks=[])
    one.log.close()
    state = one._state(0, full=True)
    assert (state["world_size"], state["rng_ranks"]) == (1, None)


def test_resuming_a_finished_run_trains_nothing_and_returns_its_best(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    best = Trainer(_cfg(run), bundle=bundle, callbacks=[]).fit()["best_top1"]
    done = Trainer(_cfg(run), bundle=bundle, callbacks=[], resume=run / CHECKPOINT)
    assert done.start_epoch == 1 and done.fit() == {"run_dir": str(run), "best_top1": best}


def test_the_first_line_names_the_convolution_and_an_older_checkpoints_is_native(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run, conv="custom"), bundle=bundle, callbacks=[]).fit()
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("[visionlab] training simplenet (custom conv) on fashion-mnist: 96 train / 20 val images")
    state = load_checkpoint(run / BEST)
    del state["model_args"]["conv"]  # written before the convolution was a choice
    save_checkpoint(state, tmp_path / "old" / BEST)
    old = Trainer(_cfg(tmp_path / "tuned", epochs=1), bundle=bundle, callbacks=[], resume=tmp_path / "old" / BEST)
    old.train_one_epoch = old._validate = old._end_epoch = lambda *a: pytest.fail("no epoch to run")
    old.start_epoch = 1
    capsys.readouterr()
    old.fit()
    assert "training simplenet (native conv) on fashion-mnist" in capsys.readouterr().err


@pytest.mark.parametrize("robust", [True, False])
def test_an_epoch_line_adds_pgd_and_ema_accuracies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], robust: bool
) -> None:
    monkeypatch.setattr(trainer_module, "time", Clock())
    run = tmp_path / "run"
    extra = dict(select_by="robust", robust_val=4) if robust else {}
    trainer = Trainer(_cfg(run, ema=0.9, **extra), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[])
    warning = []
    if robust:  # as if resumed after an epoch at 50% PGD top-1: this epoch's 25% is a collapse
        pgd = {id(trainer.model): 25.0, id(trainer.ema.module): 37.5}
        trainer.monitor.measure = lambda model: pgd[id(model)]
        trainer.monitor.collapsed = lambda last, now: (last, now) == (50.0, 25.0)
        trainer.last_robust_top1 = 50.0
        warning = [
            "[visionlab] WARNING: catastrophic overfitting at epoch 1: PGD-10 top-1 on 4 validation images fell from "
            "50.00% to 25.00% (the model learned to defeat its training attack only). model_best keeps the best "
            "epoch by the selection metric; multi-step PGD training (adv_train=pgd) does not do this"
        ]
    capsys.readouterr()
    result = trainer.fit()
    (r,) = [x for x in _records(run) if x["type"] == "epoch"]
    tail = f" PGD top-1 25.00 | EMA top-1 {r['val_ema_top1']:.2f} PGD 37.50" if robust else (
        f" | EMA top-1 {r['val_ema_top1']:.2f}")  # fmt: skip
    assert capsys.readouterr().err.splitlines()[1:] == [
        *warning,
        f"[visionlab] epoch 1/1: train loss {r['train_loss']:.4f} top-1 {r['train_top1']:.2f} | val loss "
        f"{r['val_loss']:.4f} top-1 {r['val_top1']:.2f} top-5 {r['val_top5']:.2f}{tail} | 2s",
    ]
    assert result.get("best_robust_top1") == (25.0 if robust else None)


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_batches_reach_the_model_in_the_asked_layout(tmp_path: Path, channels_last: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor(TRAIN_LABELS[:32])
    rgb = DataBundle(
        kind="cifar10", root="(memory)", train=TensorDataset(torch.rand(32, 3, 8, 8, generator=gen), labels),
        val=TensorDataset(torch.rand(4, 3, 8, 8, generator=gen), labels[:4]), num_classes=10, in_channels=3,
        image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, class_names=[str(i) for i in range(10)], recipe="small",
    )  # fmt: skip
    trainer = Trainer(_cfg(tmp_path / "run", channels_last=channels_last), bundle=rgb, callbacks=[])
    forward, layouts = trainer.model.forward, []

    def recording(images: torch.Tensor) -> torch.Tensor:
        layouts.append((images.is_contiguous(), images.is_contiguous(memory_format=torch.channels_last)))
        return forward(images)

    trainer.model.forward = recording
    trainer.train_one_epoch(0)
    trainer.log.close()
    assert layouts == [(not channels_last, channels_last)] * 2


def test_the_loss_is_checked_and_logged_every_print_freq_steps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(_cfg(run, epochs=2, print_freq=4), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[]).fit()
    assert [r["step"] for r in _records(run) if r["type"] == "step"] == [4, 10]  # 6 steps an epoch: the 4th of each


def test_without_tensorboard_no_event_writer_is_made(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path / "run", tensorboard=False), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[])
    trainer.log.close()
    assert trainer.log.writer is None and not (tmp_path / "run" / "tensorboard").exists()


# --start-epoch fast-forwards the schedule before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_a_resume_carries_over_exactly_the_records_through_its_checkpoints_epoch(tmp_path: Path) -> None:
    bundle, run = _bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(_cfg(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    records = _records(run)
    state = load_checkpoint(run / CHECKPOINT)
    state["epoch"] = 0  # as if killed in epoch 1: its records are in metrics.jsonl, its checkpoint is epoch 0's
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    (tmp_path / "old" / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    resumed = Trainer(
        _cfg(tmp_path / "new", epochs=2), bundle=bundle, callbacks=[], resume=tmp_path / "old" / CHECKPOINT
    )
    resumed.log.close()
    assert _records(tmp_path / "new") == [r for r in records if r["epoch"] == 0] != []
    partial = tmp_path / "partial"  # old records, no checkpoint: a new run (fine-tuning) starts an empty log
    partial.mkdir()
    (partial / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    Trainer(_cfg(partial, epochs=2, start_epoch=1), bundle=bundle, callbacks=[], resume=run / BEST).log.close()
    assert (partial / "metrics.jsonl").read_text() == ""


def test_the_training_step_runs_ddp_on_the_trainers_device_then_the_asked_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapped, compiled = [], []

    class Wrapping(TwoRanks):
        def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
            wrapped.append((model, device))
            return model

    monkeypatch.setattr(torch, "compile", lambda model, backend: compiled.append((model, backend)) or "compiled")
    trainer = Trainer(_cfg(tmp_path / "run", compile="aot_eager"), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[],
                      dist=Wrapping(rank=0, world_size=2))  # fmt: skip
    trainer.log.close()
    assert wrapped == [(trainer.model, torch.device("cpu"))] and compiled == [(trainer.model, "aot_eager")]
    assert trainer.train_model == "compiled"
