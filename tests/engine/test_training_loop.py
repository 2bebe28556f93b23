"""The training loop (``Trainer.train_one_epoch`` and its step): the objective it minimises and reports, the
clipped gradient of an SGD step, the schedule's learning rate at every step (also fast-forwarded by
``--start-epoch``), one amp step in bfloat16, train mode and the asked memory layout for every batch, a rank's
slice of each global batch and the sums it all-reduces, and what an epoch's validation asks ``evaluate`` and
the robust monitor. Losses and predictions are forced by wrapping the model's forward; the data are in memory
(builders.py), a world of two is one whose collectives are identities."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.data import DataBundle
from visionlab.engine import (
    ClassificationTask,
    TrainConfig,
    Trainer,
    warmup_cosine_factor,
)
from visionlab.engine import trainer as trainer_module

from ..conftest import IdentityWorld
from .builders import (
    IMAGE,
    PLAIN,
    STEPS_PER_EPOCH,
    TRAIN_LABELS,
    VAL,
    Bars,
    Corners,
    Losses,
    Monitor,
    TwoRanks,
    cross_entropy,
    memory_bundle,
    memory_config,
    memory_trainer,
    records_of,
)


def test_training_objective_is_the_label_smoothed_cross_entropy(tmp_path: Path) -> None:
    smoothing = 0.1
    trainer = memory_trainer(
        tmp_path / "run", memory_bundle([0, 1] * 48, list(range(10))), epochs=1, label_smoothing=smoothing
    )
    # The task on hand-made logits: (2, 0, 1), target 0.
    loss, logits = trainer.task(Corners(), IMAGE, torch.tensor([0]))
    assert torch.equal(logits, torch.tensor([PLAIN]))
    assert float(loss) == pytest.approx(cross_entropy(PLAIN, 0, smoothing), rel=1e-6)
    assert cross_entropy(PLAIN, 0, smoothing) - cross_entropy(PLAIN, 0) > 0.05  # smoothing is visible

    # The loss the training loop minimises and reports: fixed logits z_k = k / 2 for every image (times 0 plus the
    # model's, so backward still runs), labels 0 and 1 alternating.
    z = [k / 2 for k in range(10)]
    forward = trainer.model.forward
    trainer.model.forward = lambda images: forward(images) * 0 + torch.tensor(z)
    train_loss = trainer.fit()["train_loss"]
    expected = (cross_entropy(z, 0, smoothing) + cross_entropy(z, 1, smoothing)) / 2
    assert train_loss == pytest.approx(expected, rel=1e-6)
    assert expected - (cross_entropy(z, 0) + cross_entropy(z, 1)) / 2 < -0.1  # not the unsmoothed loss


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_an_sgd_step_uses_the_clipped_gradient(tmp_path: Path, clip: float) -> None:
    """One step of plain SGD (no momentum, weight decay or warmup) on one batch: w1 = w0 - lr * s * g, with g the
    batch's gradient and s = min(1, clip / |g|) for the global L2 norm |g|; --clip-grad 0 leaves g alone."""
    bundle = memory_bundle([*range(10), *range(6)], list(range(10)))  # 16 images: one batch
    trainer = memory_trainer(tmp_path / "run", bundle, epochs=1, lr=0.1, momentum=0.0, weight_decay=0.0, warmup=0.0,
                             clip_grad=clip)  # fmt: skip
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss, _ = trainer.task(trainer.model, *bundle.train.tensors)
    grads = torch.autograd.grad(loss, list(trainer.model.parameters()))
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = min(1.0, clip / norm) if clip else 1.0
    assert scale < 0.5 if clip else norm > 0.1  # clipping bites, or would have
    trainer.fit()
    # The loader shuffles the batch, so the loop's gradient differs from g by float32 rounding of a reordered sum.
    for p, p0, g in zip(trainer.model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * scale * g, rtol=1e-5, atol=1e-7)


# The fast-forward steps the scheduler before any optimizer step, on purpose; PyTorch warns about that order.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_start_epoch_fast_forwards_the_schedule_by_steps(tmp_path: Path) -> None:
    """--start-epoch 2 of 4, 6 steps per epoch, 3 warmup epochs: the run starts at global step 12, inside the
    18-step warmup, and every step s uses lr * warmup_cosine_factor(s, 18, 24); by epochs it would start at
    factor(2), a fifth of that."""
    lr, warmup, total = 0.05, 3 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH
    run = tmp_path / "run"
    trainer = memory_trainer(
        run, memory_bundle(TRAIN_LABELS, list(range(10))), epochs=4, start_epoch=2, warmup=3.0, print_freq=1
    )
    assert trainer.scheduler.last_epoch == 12
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr * warmup_cosine_factor(12, warmup, total))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 13 / 19)  # the same, by hand

    used = []
    forward = trainer.model.forward

    def recording(images: torch.Tensor) -> torch.Tensor:
        if trainer.model.training:
            used.append(trainer.optimizer.param_groups[0]["lr"])
        return forward(images)

    trainer.model.forward = recording
    trainer.fit()
    assert used == pytest.approx([lr * warmup_cosine_factor(s, warmup, total) for s in range(12, 24)], rel=1e-12)
    steps = records_of(run, "step")
    assert [r["step"] for r in steps] == list(range(13, 25))
    # A step record is written after the step: its lr is the one step `r["step"]` (0-based) will use.
    after = [lr * warmup_cosine_factor(s, warmup, total) for s in range(13, 25)]
    assert [r["lr"] for r in steps] == pytest.approx(after)
    assert [r["epoch"] for r in records_of(run, "epoch")] == [2, 3]


def test_an_amp_step_runs_in_bfloat16_and_counts_one_step(tmp_path: Path) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    images, target = bundle.train.tensors[0][:16], bundle.train.tensors[1][:16]
    for amp, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        trainer = memory_trainer(tmp_path / str(amp), bundle, amp=amp)
        trainer.log.close()
        loss, logits = trainer._train_step(images, target)
        assert (loss.dtype, logits.dtype, trainer.step, trainer.scheduler.last_epoch) == (torch.float32, dtype, 1, 1)


def test_training_starts_in_train_mode_whatever_mode_the_model_was_left_in(tmp_path: Path) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), epochs=1)
    forward, modes = trainer.model.forward, []
    trainer.model.forward = lambda images: modes.append(trainer.model.training) or forward(images)
    trainer.model.eval()
    trainer.train_one_epoch(0)
    trainer.log.close()
    assert modes == [True] * 6


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_batches_reach_the_model_in_the_asked_layout(tmp_path: Path, channels_last: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor(TRAIN_LABELS[:32])
    rgb = DataBundle(
        kind="cifar10", root="(memory)", train=TensorDataset(torch.rand(32, 3, 8, 8, generator=gen), labels),
        val=TensorDataset(torch.rand(4, 3, 8, 8, generator=gen), labels[:4]), num_classes=10, in_channels=3,
        image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, class_names=[str(i) for i in range(10)], recipe="small",
    )  # fmt: skip
    trainer = Trainer(memory_config(tmp_path / "run", channels_last=channels_last), bundle=rgb, callbacks=[])
    forward, layouts = trainer.model.forward, []

    def recording(images: torch.Tensor) -> torch.Tensor:
        layouts.append((images.is_contiguous(), images.is_contiguous(memory_format=torch.channels_last)))
        return forward(images)

    trainer.model.forward = recording
    trainer.train_one_epoch(0)
    trainer.log.close()
    assert layouts == [(not channels_last, channels_last)] * 2


def test_rank_one_of_two_reduces_its_sums_shows_the_mean_loss_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bars: Bars
) -> None:
    """Rank 1 trains on 8 of each global batch of 16 (6 steps) and validates VAL[1::2] (10 images); the loss it
    shows is the all-reduced sum over the world divided by 2 (here its own loss, halved)."""
    TwoRanks.reduced = []
    world = TwoRanks(rank=1, world_size=2)
    cfg = TrainConfig(data="fashion-mnist", out=str(tmp_path / "run"), epochs=1, batch_size=16, lr=0.05, warmup=0.5,
                      workers=0, progress=True, tensorboard=False, print_freq=2, seed=7)  # fmt: skip
    trainer = Trainer(cfg, bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[], dist=world)
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


class Targets(ClassificationTask):
    """The plain objective, recording each training step's labels."""

    def __init__(self) -> None:
        super().__init__(nn.CrossEntropyLoss())
        self.steps: list[list[int]] = []

    def __call__(self, model, images, target):
        self.steps.append(target.tolist())
        return super().__call__(model, images, target)


def test_a_rank_trains_one_step_on_its_slice_when_the_set_is_no_larger_than_one_batch(
    tiny_fmnist: str, tmp_path: Path
) -> None:
    def fit(rank: int, world: int) -> tuple[dict[str, Any], list[list[int]]]:
        cfg = TrainConfig(data=tiny_fmnist, out=str(tmp_path / f"{rank}of{world}"), epochs=1, batch_size=16,
                          limit_train=15, limit_val=8, workers=0, device="cpu", tensorboard=False, progress=False,
                          quiet=True, seed=0)  # fmt: skip
        task = Targets()
        record = Trainer(cfg, task=task, callbacks=[], dist=IdentityWorld(rank, world)).fit()
        return record, task.steps

    (one, whole), (_, first), (two, second) = fit(0, 1), fit(0, 2), fit(1, 2)
    assert one["step"] == two["step"] == 1
    assert len(whole[0]) == 15 and first[0] + second[0] == whole[0][:14]


@pytest.mark.parametrize("collapsed", [True, False])
def test_validation_asks_evaluate_and_the_monitor_for_both_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], collapsed: bool
) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), ema=0.9, tta=True,
                             channels_last=True, progress=True, quiet=True)  # fmt: skip
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
        "the selection metric; more attack steps (adv_train=pgd, adv_steps) or n-fgsm make it rarer\n"
    )
    assert capsys.readouterr().err == (warning if collapsed else "")  # printed even when quiet


def test_validation_without_ema_or_monitor_is_the_clean_metrics(tmp_path: Path, monkeypatch) -> None:
    trainer = memory_trainer(tmp_path / "run", memory_bundle(TRAIN_LABELS, VAL), amp=True)
    trainer.log.close()
    calls = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda model, *a, **kw: calls.append(kw) or {"top1": 5.0})
    assert trainer._validate(0) == {"top1": 5.0}
    assert calls == [dict(tta=False, amp=True, channels_last=False, progress=False, dist=trainer.dist)]
    assert trainer.last_robust_top1 is None
