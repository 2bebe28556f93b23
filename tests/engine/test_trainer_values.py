"""Trainer behaviour pinned to values computed by hand: divergence at an epoch's end, which epoch model_best
holds, test-time augmentation, label smoothing, --start-epoch. Only the public API is used (``Trainer``,
``.fit()``, ``.model``, ``.optimizer``, ``.scheduler``, ``.task``, ``evaluate``); a loss or prediction is forced by
wrapping the model's forward, and the data are in-memory tensors with labels chosen per test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from visionlab.data import DataBundle
from visionlab.engine import (
    BEST,
    CHECKPOINT,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    evaluate,
    load_checkpoint,
    make_loader,
    model_from_checkpoint,
    warmup_cosine_factor,
)

STEPS_PER_EPOCH = 6  # 96 training images, batch 16


def _bundle(train_labels: list[int], val_labels: list[int]) -> DataBundle:
    """Fashion-MNIST-shaped random images with the given labels, in memory (no augmentation, no files)."""
    gen = torch.Generator().manual_seed(0)

    def split(labels: list[int]) -> TensorDataset:
        return TensorDataset(torch.rand(len(labels), 1, 28, 28, generator=gen), torch.tensor(labels))

    return DataBundle(
        kind="fashion-mnist", root="(memory)", train=split(train_labels), val=split(val_labels), num_classes=10,
        in_channels=1, image_size=28, mean=(0.5,), std=(0.25,), class_names=[str(i) for i in range(10)],
        recipe="small",
    )  # fmt: skip


def _trainer(out: Path, bundle: DataBundle, **kw) -> Trainer:
    base = dict(
        data="fashion-mnist", out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7,
    )  # fmt: skip
    return Trainer(TrainConfig(**{**base, **kw}), bundle=bundle)


def _records(run: Path, kind: str) -> list[dict]:
    records = (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    return [r for r in records if r["type"] == kind]


TRAIN_LABELS = [(7 * i) % 10 for i in range(96)]  # every class, in a scrambled order


# ------------------------------------------------------------------------------------------------ divergence
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_bad_loss_in_an_epochs_last_steps_stops_training_and_keeps_the_checkpoints(tmp_path: Path, bad: str) -> None:
    """print_freq=4 checks the loss at step 4 of each 6-step epoch only; a NaN or infinite loss at steps 5 and 6
    of epoch 2 must be caught by the end-of-epoch check, before epoch 2 writes any checkpoint."""
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, list(range(10)) * 2), epochs=3, print_freq=4)
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
    assert [r["epoch"] for r in _records(run, "epoch")] == [0]


# ------------------------------------------------------------------------------------------------ model_best
def test_model_best_holds_the_epoch_with_the_best_validation_top1(tmp_path: Path) -> None:
    """Validation predictions are forced so top-1 is 25, 75, 75, 50 % in epochs 0-3: model_best must hold epoch
    1's weights (best; epoch 2 only ties it; epoch 3 is the last), checkpoint.pth.tar epoch 3's."""
    accuracies = [25.0, 75.0, 75.0, 50.0]
    val_labels = [(3 * i + 1) % 10 for i in range(32)]
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, val_labels), epochs=4)
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
    assert [r["val_top1"] for r in _records(run, "epoch")] == accuracies and result["best_top1"] == 75.0
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
    bundle, run, cpu = _bundle(TRAIN_LABELS, list(range(10)) * 2), tmp_path / "run", torch.device("cpu")
    record = _trainer(run, bundle, epochs=1).fit()
    model = model_from_checkpoint(load_checkpoint(run / BEST))
    stats = evaluate(model, make_loader(bundle.val, 16, train=False, workers=0, device=cpu), cpu)
    # The same weights, batch shapes and kernels as the run's own evaluation, so the same logits: the metrics agree
    # to the rounding of the loss sum (a freshly initialised model is off by ~1e-3 here).
    assert stats["loss"] == pytest.approx(record["val_loss"], rel=1e-6)
    assert (stats["top1"], stats["top5"]) == (record["val_top1"], record["val_top5"])


# ------------------------------------------------------------------------------------------------ TTA
class Corners(nn.Module):
    """Logits of a one-channel 2x2 image: its top-left, top-right and bottom-left pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 1, 0]], dim=1)


IMAGE = torch.tensor([[[[2.0, 0.0], [1.0, 3.0]]]])  # rows (2, 0) and (1, 3)
PLAIN = [2.0, 0.0, 1.0]  # (top-left, top-right, bottom-left)
# Mirrored left-right the image is rows (0, 2), (3, 1): logits (0, 2, 3), averaged with PLAIN: (1, 1, 2).
# (Mirrored top-bottom it would be (1, 3, 2) and the average (1.5, 1.5, 1.5); the sum instead of the mean (2, 2, 4).)
AVERAGED = [1.0, 1.0, 2.0]


def _cross_entropy(logits: list[float], target: int, smoothing: float = 0.0) -> float:
    """-sum_k q_k log softmax(logits)_k with q = (1 - smoothing) one_hot(target) + smoothing / K."""
    lse = math.log(sum(math.exp(z) for z in logits))
    q = [(1 - smoothing) * (k == target) + smoothing / len(logits) for k in range(len(logits))]
    return sum(qk * (lse - z) for qk, z in zip(q, logits, strict=True))


@pytest.mark.parametrize("target", [0, 1, 2])
def test_tta_averages_the_logits_of_the_image_and_its_width_mirror(target: int) -> None:
    """The loss for each target pins softmax(averaged logits), i.e. the averaged logits up to the constant
    cross-entropy cannot see; top-1 tells the averaged prediction (class 2) from the plain one (class 0)."""
    model, loader, cpu = Corners(), [(IMAGE, torch.tensor([target]))], torch.device("cpu")
    tta = evaluate(model, loader, cpu, tta=True)
    assert tta["loss"] == pytest.approx(_cross_entropy(AVERAGED, target), rel=1e-6)
    assert (tta["top1"], tta["top5"], tta["n"]) == (100.0 if target == 2 else 0.0, 100.0, 1)
    plain = evaluate(model, loader, cpu, tta=False)
    assert plain["loss"] == pytest.approx(_cross_entropy(PLAIN, target), rel=1e-6)
    assert plain["top1"] == (100.0 if target == 0 else 0.0)


# ------------------------------------------------------------------------------------------------ label smoothing
def test_training_objective_is_the_label_smoothed_cross_entropy(tmp_path: Path) -> None:
    smoothing = 0.1
    trainer = _trainer(tmp_path / "run", _bundle([0, 1] * 48, list(range(10))), epochs=1, label_smoothing=smoothing)
    # The task on hand-made logits: (2, 0, 1), target 0.
    loss, logits = trainer.task(Corners(), IMAGE, torch.tensor([0]))
    assert torch.equal(logits, torch.tensor([PLAIN]))
    assert float(loss) == pytest.approx(_cross_entropy(PLAIN, 0, smoothing), rel=1e-6)
    assert _cross_entropy(PLAIN, 0, smoothing) - _cross_entropy(PLAIN, 0) > 0.05  # smoothing is visible

    # The loss the training loop minimises and reports: fixed logits z_k = k / 2 for every image (times 0 plus the
    # model's, so backward still runs), labels 0 and 1 alternating.
    z = [k / 2 for k in range(10)]
    forward = trainer.model.forward
    trainer.model.forward = lambda images: forward(images) * 0 + torch.tensor(z)
    train_loss = trainer.fit()["train_loss"]
    expected = (_cross_entropy(z, 0, smoothing) + _cross_entropy(z, 1, smoothing)) / 2
    assert train_loss == pytest.approx(expected, rel=1e-6)
    assert expected - (_cross_entropy(z, 0) + _cross_entropy(z, 1)) / 2 < -0.1  # not the unsmoothed loss


# ------------------------------------------------------------------------------------------------ clipping
@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_an_sgd_step_uses_the_clipped_gradient(tmp_path: Path, clip: float) -> None:
    """One step of plain SGD (no momentum, weight decay or warmup) on one batch: w1 = w0 - lr * s * g, with g the
    batch's gradient and s = min(1, clip / |g|) for the global L2 norm |g|; --clip-grad 0 leaves g alone."""
    bundle = _bundle([*range(10), *range(6)], list(range(10)))  # 16 images: one batch
    trainer = _trainer(tmp_path / "run", bundle, epochs=1, lr=0.1, momentum=0.0, weight_decay=0.0, warmup=0.0,
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


# ------------------------------------------------------------------------------------------------ --start-epoch
# The fast-forward steps the scheduler before any optimizer step, on purpose; PyTorch warns about that order.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_start_epoch_fast_forwards_the_schedule_by_steps(tmp_path: Path) -> None:
    """--start-epoch 2 of 4, 6 steps per epoch, 3 warmup epochs: the run starts at global step 12, inside the
    18-step warmup, and every step s uses lr * warmup_cosine_factor(s, 18, 24); by epochs it would start at
    factor(2), a fifth of that."""
    lr, warmup, total = 0.05, 3 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH
    run = tmp_path / "run"
    trainer = _trainer(run, _bundle(TRAIN_LABELS, list(range(10))), epochs=4, start_epoch=2, warmup=3.0, print_freq=1)
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
    steps = _records(run, "step")
    assert [r["step"] for r in steps] == list(range(13, 25))
    # A step record is written after the step: its lr is the one step `r["step"]` (0-based) will use.
    after = [lr * warmup_cosine_factor(s, warmup, total) for s in range(13, 25)]
    assert [r["lr"] for r in steps] == pytest.approx(after)
    assert [r["epoch"] for r in _records(run, "epoch")] == [2, 3]
