"""Which epoch ``model_best.pth.tar`` (and ``model_ema.pth.tar``) keeps: the best validation top-1, or the best
PGD top-1 when selecting by robustness; the first epoch always, a tie never; an earlier best kept over a
resumed run's worse epoch; and the kept weights score what the run logged. Validation predictions are scripted
by wrapping the model's forward (builders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from visionlab.engine import (
    BEST,
    CHECKPOINT,
    Callback,
    TrainingDiverged,
    evaluate,
    load_checkpoint,
    make_loader,
    model_from_checkpoint,
)
from visionlab.engine.checkpoint import EMA

from .builders import (
    TRAIN_LABELS,
    VAL,
    memory_bundle,
    memory_trainer,
    nan_in_epoch,
    records_of,
    scripted_validation,
    tensors_equal,
)


def test_model_best_holds_the_epoch_with_the_best_validation_top1(tmp_path: Path) -> None:
    """Validation predictions are forced so top-1 is 25, 75, 75, 50 % in epochs 0-3: model_best must hold epoch
    1's weights (best; epoch 2 only ties it; epoch 3 is the last), checkpoint.pth.tar epoch 3's."""
    accuracies = [25.0, 75.0, 75.0, 50.0]
    val_labels = [(3 * i + 1) % 10 for i in range(32)]
    run = tmp_path / "run"
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, val_labels), epochs=4)
    forward, seen, weights = trainer.model.forward, {"n": 0}, []
    targets = torch.tensor(val_labels)

    def graded(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        if trainer.model.training:
            return logits
        epoch, first = divmod(seen["n"], len(val_labels))
        if first == 0:  # the weights this epoch is evaluated with
            weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        index = torch.arange(first, first + len(images))
        seen["n"] += len(images)
        right = index < accuracies[epoch] / 100 * len(val_labels)  # the first 8, 24, 24, 16 samples
        predicted = torch.where(right, targets[index], (targets[index] + 1) % 10)
        return F.one_hot(predicted, 10).float()

    trainer.model.forward = graded
    result = trainer.fit()
    assert [r["val_top1"] for r in records_of(run, "epoch")] == accuracies and result["best_top1"] == 75.0
    best, last = load_checkpoint(run / BEST), load_checkpoint(run / CHECKPOINT)
    assert (best["epoch"], best["best_top1"], last["epoch"], last["best_top1"]) == (1, 75.0, 3, 75.0)
    assert best["model"].keys() == weights[1].keys()
    for name, value in best["model"].items():
        assert torch.equal(value, weights[1][name]), name
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in weights[1])  # the epochs are told apart
    assert any(not torch.equal(weights[1][k], weights[3][k]) for k in weights[1])


def test_the_model_rebuilt_from_model_best_scores_what_the_run_logged(tmp_path: Path) -> None:
    """``eval``/``predict`` rebuild the model with model_from_checkpoint: it must carry the trained weights (the
    CLI tests only check that accuracies lie in [0, 100], which an untrained model also passes)."""
    bundle, run, cpu = memory_bundle(TRAIN_LABELS, list(range(10)) * 2), tmp_path / "run", torch.device("cpu")
    record = memory_trainer(run, bundle, epochs=1).fit()
    model = model_from_checkpoint(load_checkpoint(run / BEST))
    stats = evaluate(model, make_loader(bundle.val, 16, train=False, workers=0, device=cpu), cpu)
    # The same weights, batch shapes and kernels as the run's own evaluation, so the same logits: the metrics agree
    # to the rounding of the loss sum (a freshly initialised model is off by ~1e-3 here).
    assert stats["loss"] == pytest.approx(record["val_loss"], rel=1e-6)
    assert (stats["top1"], stats["top5"]) == (record["val_top1"], record["val_top5"])


def test_the_first_epoch_is_best_even_at_zero_accuracy_and_a_tie_is_not(tmp_path: Path) -> None:
    """Validation forced to 0% in every epoch (class 0 predicted, never the label): model_best is written once, by
    the first epoch, and kept."""
    run = tmp_path / "run"
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, list(range(1, 10)) * 2), epochs=3)
    forward = trainer.model.forward

    def always_zero(images: torch.Tensor) -> torch.Tensor:
        logits = forward(images)
        return logits if trainer.model.training else torch.zeros_like(logits).index_fill_(1, torch.tensor([0]), 1.0)

    trainer.model.forward = always_zero
    assert trainer.fit()["best_top1"] == 0.0
    assert load_checkpoint(run / BEST)["epoch"] == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2


def test_robust_selection_keeps_the_best_pgd_epoch_and_its_state_is_restored(tmp_path: Path) -> None:
    """Clean top-1 100%, 10%, 100% and PGD top-1 25%, 50%, 50%: selecting by robustness keeps epoch 1 (better
    than epoch 0, tied by epoch 2), where clean top-1 would keep epoch 0."""
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    run = tmp_path / "run"
    first = memory_trainer(run, bundle, epochs=3, select_by="robust", robust_val=4, adv_eps=0.5)
    robust = iter([25.0, 50.0, 50.0])
    first.monitor.measure = lambda model: next(robust)  # PGD top-1 of each epoch, scripted
    scripted_validation(first, [True, False, True])
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
    resumed = memory_trainer(
        run, bundle, epochs=3, select_by="robust", robust_val=4, adv_eps=0.5, resume=run / CHECKPOINT
    )
    assert (resumed.best_robust_top1, resumed.last_robust_top1, resumed.start_epoch) == (50.0, 50.0, 3)


def test_a_resumed_run_keeps_the_earlier_best_over_a_worse_first_epoch(tmp_path: Path) -> None:
    """Epoch 0 validates at 100% and the run stops in epoch 1; resumed, epoch 1 validates at 10%: the resumed
    run's first epoch is not automatically best, model_best stays epoch 0."""
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    first = memory_trainer(run, bundle, epochs=2)
    scripted_validation(first, [True])
    first.model.forward = nan_in_epoch(first, 2)  # validation stays scripted
    with pytest.raises(TrainingDiverged):
        first.fit()
    assert load_checkpoint(run / BEST)["epoch"] == 0
    resumed = memory_trainer(run, bundle, epochs=2, resume=run / CHECKPOINT)
    assert resumed.best_top1 == 100.0
    scripted_validation(resumed, [False])
    assert resumed.fit()["val_top1"] == 10.0
    assert load_checkpoint(run / BEST)["epoch"] == 0


def test_an_epochs_end_records_every_metric_and_keeps_the_best_of_each_model(tmp_path: Path) -> None:
    """Epoch 0 sets the bests (clean 40%, EMA 45%); epoch 1 is worse on both: model_best and model_ema stay
    epoch 0's, the last checkpoint moves on. The weights are changed between the epochs, so the files tell them
    apart."""
    run = tmp_path / "run"
    trainer = memory_trainer(run, memory_bundle(TRAIN_LABELS, VAL), ema=0.9)
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
    assert tensors_equal(best["model"], epoch0) and tensors_equal(ema["model"], ema0)
    assert tensors_equal(last["model"], trainer.model.state_dict())
    assert "optimizer" in last and "optimizer" not in best and "optimizer" not in ema
    assert [w[1] for w in written] == [1, 2] and len(ends) == 2
