"""Trainer behaviour on a tiny Fashion-MNIST-format dataset: exact resume, divergence, fine-tuning, run files."""

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
from visionlab.report import PlotCurves

from ..conftest import Stop, StopAt, make_fashion_mnist
from ..statistical import Statistic


def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=data, out=str(out), epochs=3, batch_size=16, lr=0.05, warmup=0.5, workers=0, progress=False,
        tensorboard=False, print_freq=2, seed=7,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("workers", [0, 1])
def test_killed_and_resumed_run_ends_with_identical_weights(tiny_fmnist: str, tmp_path: Path, workers: int) -> None:
    ref = Trainer(_cfg(tiny_fmnist, tmp_path / "ref", workers=workers))
    ref.fit()

    # 96 images / batch 16 = 6 steps per epoch: crash at the 4th step of epoch 2 (call 10).
    with pytest.raises(Stop):
        Trainer(_cfg(tiny_fmnist, tmp_path / "run", workers=workers), task=StopAt(10)).fit()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 0

    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "run", workers=workers), resume=tmp_path / "run" / CHECKPOINT)
    assert resumed.start_epoch == 1 and resumed.step == 6
    resumed.fit()

    for (name, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    final_ref = load_checkpoint(tmp_path / "ref" / CHECKPOINT)
    final = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert final["step"] == final_ref["step"] == 18
    for a, b in zip(final_ref["optimizer"]["state"].values(), final["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])

    # metrics.jsonl reads as if the run never stopped: one record per epoch, same values.
    def epochs(run: Path) -> list[dict]:
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [r for r in records if r["type"] == "epoch"]

    ref_epochs, run_epochs = epochs(tmp_path / "ref"), epochs(tmp_path / "run")
    assert [r["epoch"] for r in run_epochs] == [0, 1, 2]
    assert [r["val_top1"] for r in run_epochs] == [r["val_top1"] for r in ref_epochs]
    assert [r["train_loss"] for r in run_epochs] == [r["train_loss"] for r in ref_epochs]


@pytest.mark.statistical(seed=0)
def test_run_directory_contents_and_learning(tmp_path: Path, stat_seed: int, stat: Statistic) -> None:
    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', n_train=320, n_test=64, seed=stat_seed)}"
    cfg = _cfg(data, tmp_path / "run", tensorboard=True, epochs=4, optimizer="adamw", lr=3e-3, seed=stat_seed + 7)
    result = Trainer(cfg, callbacks=[PlotCurves()]).fit()  # the CLI's train passes PlotCurves too
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "curves.png", CHECKPOINT, BEST):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch_records = [r for r in records if r["type"] == "epoch"]
    assert len(epoch_records) == 4 and any(r["type"] == "step" for r in records)
    for key in ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "seconds"):
        assert key in epoch_records[0]
    # the class is a bright row: the tiny net must beat chance (10%) clearly
    stat.check("best val top-1", result["best_top1"], ">", 30)
    first, last = epoch_records[0]["train_loss"], epoch_records[-1]["train_loss"]
    stat.check("train loss, first epoch - last", first - last, ">", 0)
    best = load_checkpoint(run / BEST)
    assert "optimizer" not in best and best["best_top1"] == max(r["val_top1"] for r in epoch_records)
    assert best["class_names"][0] == "T-shirt/top"


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NanFromCall8(ClassificationTask):  # 6 steps per epoch: the loss turns NaN at step 2 of epoch 2
        calls = 0

        def __call__(self, model, images, target):
            self.calls += 1
            loss, logits = super().__call__(model, images, target)
            return (loss * float("nan") if self.calls >= 8 else loss), logits

    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=3), task=NanFromCall8(torch.nn.CrossEntropyLoss()))
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


def test_resume_from_model_best_fine_tunes(tiny_fmnist: str, tmp_path: Path) -> None:
    first = Trainer(_cfg(tiny_fmnist, tmp_path / "a", epochs=1))
    first.fit()
    tuned = Trainer(_cfg(tiny_fmnist, tmp_path / "b", epochs=1, lr=0.01), resume=tmp_path / "a" / BEST)
    assert not tuned.full_resume and tuned.start_epoch == 0
    for a, b in zip(first.model.state_dict().values(), tuned.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # started from the stored weights
    tuned.fit()
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["config"]["lr"] == 0.01


def test_label_smoothing_tta_and_adamw_wd_groups(tiny_fmnist: str, tmp_path: Path) -> None:
    cfg = _cfg(tiny_fmnist, tmp_path / "r", epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.05,
               wd_exclude_norm_bias=True, label_smoothing=0.1, tta=True)  # fmt: skip
    trainer = Trainer(cfg)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert trainer.task.criterion.label_smoothing == 0.1
    assert trainer.fit()["val_top1"] >= 0.0


def test_checkpoint_stores_the_whole_architecture(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ViT checkpoint keeps the per-size defaults it was built with, so editing them later cannot break it."""
    from visionlab.models.vit import VIT_CONFIGS

    small = dict(embed_dim=32, depth=2, num_heads=2, window_block_indexes=(0,))
    first = Trainer(_cfg(tiny_fmnist, tmp_path / "a", epochs=1, model="vit", optimizer="adamw", lr=1e-3,
                         model_kwargs=small, limit_train=64, limit_val=32))  # fmt: skip
    first.fit()
    stored = load_checkpoint(tmp_path / "a" / BEST)["model_args"]
    assert stored["patch_size"] == 4 and stored["stem_channels"] == VIT_CONFIGS[28]["stem_channels"]  # defaults
    assert stored["embed_dim"] == 32 and stored["depth"] == 2  # overrides win
    monkeypatch.setitem(VIT_CONFIGS, 28, dict(patch_size=7, embed_dim=64, depth=1, num_heads=1))
    again = Trainer(_cfg(tiny_fmnist, tmp_path / "b", epochs=1, model="vit"), resume=tmp_path / "a" / BEST)
    assert again.model.net.patch_size == 4 and len(again.model.net.blocks) == 2
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
