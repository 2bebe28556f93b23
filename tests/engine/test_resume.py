"""Resume: a killed run resumed exactly (the same weights, optimizer state and records as a run never
stopped), what an exact resume restores (optimizer, schedule, average, each rank's random state) and what it
refuses (other data, more epochs than planned, pretrained weights beside a checkpoint to fine-tune from),
fine-tuning from ``model_best`` (weights only, a new schedule), older checkpoints without the later fields,
and resume as a user meets it: a moved or copied run, a request for more or fewer epochs than planned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from visionlab.cli import main
from visionlab.data import DatasetError
from visionlab.engine import (
    BEST,
    CHECKPOINT,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
)
from visionlab.engine.checkpoint import capture_rng, save_checkpoint
from visionlab.errors import ConfigError

from ..conftest import Stop, StopAt
from .builders import (
    TRAIN_LABELS,
    VAL,
    TwoRanks,
    built_trainer,
    file_config,
    memory_bundle,
    memory_config,
    memory_trainer,
    nan_in_epoch,
    read_records,
)


def _cfg(data: str, out: str, epochs: int = 3) -> TrainConfig:
    return TrainConfig(data=data, out=out, epochs=epochs, batch_size=16, lr=0.01, warmup=0.5, workers=0,
                       progress=False, tensorboard=False, seed=3)  # fmt: skip


def _interrupted_run(data: str, out: str) -> None:
    """A 3-epoch run stopped in its second epoch (96 images / 16 = 6 steps per epoch): epoch 0 checkpointed."""
    with pytest.raises(Stop):
        Trainer(_cfg(data, out), task=StopAt(9)).fit()


def _epochs(run: Path) -> list[int]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["epoch"] for r in records if r["type"] == "epoch"]


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def _resume_argv(checkpoint: Path, *extra: str) -> list[str]:
    return ["train", "--resume", str(checkpoint), "-j", "0", "--no-progress", "--no-tensorboard", *extra]


def test_a_copied_run_resumes_next_to_its_checkpoint_not_into_the_original(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _interrupted_run(tiny_fmnist, "runs/demo")  # a relative --out, as `make demo` gives
    original = tmp_path / "runs" / "demo"
    before = _snapshot(original)
    copy = tmp_path / "elsewhere" / "demo-copy"
    shutil.copytree(original, copy)

    assert main(_resume_argv(copy / CHECKPOINT)) == 0
    assert _snapshot(original) == before  # the original run's files are untouched
    assert load_checkpoint(copy / CHECKPOINT)["epoch"] == 2
    assert _epochs(copy) == [0, 1, 2]
    assert (copy / BEST).is_file()


def test_resume_into_another_directory_with_out_carries_the_history(tiny_fmnist: str, tmp_path: Path) -> None:
    _interrupted_run(tiny_fmnist, str(tmp_path / "a"))
    before = _snapshot(tmp_path / "a")
    assert main(_resume_argv(tmp_path / "a" / CHECKPOINT, "--out", str(tmp_path / "b"))) == 0
    assert _snapshot(tmp_path / "a") == before
    assert _epochs(tmp_path / "b") == [0, 1, 2]  # epoch 0's record comes from a/metrics.jsonl
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["step"] == 18


def test_more_epochs_than_planned_is_refused_with_the_way_to_train_longer(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    Trainer(_cfg(tiny_fmnist, str(run))).fit()  # finished: the cosine schedule has reached 0
    assert Trainer(_cfg(tiny_fmnist, str(run)), resume=run / CHECKPOINT).optimizer.param_groups[0]["lr"] == 0.0
    before = _snapshot(run)
    capsys.readouterr()

    with pytest.raises(ConfigError, match=r"planned for 3.*learning rate 0.*fine-tune from .*model_best") as info:
        Trainer(_cfg(tiny_fmnist, str(run), epochs=5), resume=run / CHECKPOINT)
    assert info.value.field == "epochs"
    assert main(_resume_argv(run / CHECKPOINT, "--epochs", "5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs" in err[0] and "model_best" in err[0]
    assert _snapshot(run) == before  # nothing already saved is touched

    # The way the message points to works: fine-tuning from model_best with a new schedule trains at lr > 0.
    tuned = Trainer(_cfg(tiny_fmnist, str(tmp_path / "tuned"), epochs=2), resume=run / BEST)
    assert not tuned.full_resume and tuned.optimizer.param_groups[0]["lr"] > 0


def test_fewer_epochs_than_planned_stops_early_on_the_planned_schedule(tiny_fmnist: str, tmp_path: Path) -> None:
    _interrupted_run(tiny_fmnist, str(tmp_path / "run"))
    trainer = Trainer(_cfg(tiny_fmnist, str(tmp_path / "run"), epochs=2), resume=tmp_path / "run" / CHECKPOINT)
    assert trainer.scheduler.total_steps == 18  # the 3-epoch plan, not re-planned for 2
    trainer.fit()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 1
    assert _epochs(tmp_path / "run") == [0, 1]


@pytest.mark.parametrize("workers", [0, 1])
def test_killed_and_resumed_run_ends_with_identical_weights(tiny_fmnist: str, tmp_path: Path, workers: int) -> None:
    ref = Trainer(file_config(tiny_fmnist, tmp_path / "ref", workers=workers))
    ref.fit()

    # 96 images / batch 16 = 6 steps per epoch: crash at the 4th step of epoch 2 (call 10).
    with pytest.raises(Stop):
        Trainer(file_config(tiny_fmnist, tmp_path / "run", workers=workers), task=StopAt(10)).fit()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 0

    resumed = Trainer(file_config(tiny_fmnist, tmp_path / "run", workers=workers), resume=tmp_path / "run" / CHECKPOINT)
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


def test_resume_from_model_best_fine_tunes(tiny_fmnist: str, tmp_path: Path) -> None:
    first = Trainer(file_config(tiny_fmnist, tmp_path / "a", epochs=1))
    first.fit()
    tuned = Trainer(file_config(tiny_fmnist, tmp_path / "b", epochs=1, lr=0.01), resume=tmp_path / "a" / BEST)
    assert not tuned.full_resume and tuned.start_epoch == 0
    for a, b in zip(first.model.state_dict().values(), tuned.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # started from the stored weights
    tuned.fit()
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["config"]["lr"] == 0.01


def test_an_exact_resume_restores_the_optimizer_schedule_and_average(tmp_path: Path) -> None:
    """The checkpoint's momentum buffers, schedule position, weight EMA and its best accuracy come back as saved."""
    run = tmp_path / "run"
    Trainer(memory_config(run, ema=0.9), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    resumed = built_trainer(memory_config(run, ema=0.9), resume=run / CHECKPOINT)
    saved, now = state["optimizer"]["state"], resumed.optimizer.state_dict()["state"]
    assert saved and list(now) == list(saved)
    assert all(torch.equal(now[k]["momentum_buffer"], saved[k]["momentum_buffer"]) for k in saved)
    assert resumed.scheduler.state_dict() == state["scheduler"] and resumed.scheduler.last_epoch == 6
    ema = resumed.ema.state_dict()
    assert ema["updates"] == state["ema"]["updates"] == 6
    assert all(torch.equal(v, state["ema"]["model"][k]) for k, v in ema["model"].items())
    assert resumed.best_ema == state["best_ema"] and isinstance(state["best_ema"], float)


def test_a_run_without_loss_scaling_resumes_into_one_with_it(tmp_path: Path) -> None:
    """A checkpoint of a CPU run (its GradScaler disabled: an empty state) resumed where loss scaling is on (``--amp``
    on CUDA, enabled here on the CPU): the scaler starts at its initial scale instead of refusing the empty state."""

    class ScaledTrainer(Trainer):
        def _build_optimization(self):
            optimizer, scheduler, _ = super()._build_optimization()
            return optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=True)

    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    assert load_checkpoint(run / CHECKPOINT)["scaler"] == {}
    resumed = ScaledTrainer(memory_config(run, epochs=2), bundle=bundle, callbacks=[], resume=run / CHECKPOINT)
    resumed.log.close()
    assert resumed.full_resume and resumed.scaler.is_enabled() and resumed.scaler.get_scale() == 2.0**16


# The --start-epoch fast-forward steps the scheduler before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_resume_and_fine_tune_say_what_they_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    memory_trainer(tmp_path / "a", bundle, epochs=2).fit()
    capsys.readouterr()
    resumed = memory_trainer(tmp_path / "b", bundle, epochs=2, resume=tmp_path / "a" / CHECKPOINT)
    assert (resumed.start_epoch, resumed.step) == (2, 12)
    assert capsys.readouterr().err == f"[visionlab] resuming {tmp_path / 'a' / CHECKPOINT} at epoch 3 (step 12)\n"
    tuned = memory_trainer(tmp_path / "c", bundle, epochs=2, start_epoch=1, resume=tmp_path / "a" / BEST)
    assert (tuned.start_epoch, tuned.step, tuned.best_top1) == (1, 6, 0.0)
    assert capsys.readouterr().err == (
        f"[visionlab] fine-tuning from the weights of {tmp_path / 'a' / BEST} (no optimizer state in it)\n"
    )


def test_a_checkpoint_for_other_data_is_refused(tmp_path: Path) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    memory_trainer(tmp_path / "a", bundle, epochs=1).fit()
    best = tmp_path / "a" / BEST
    five = bundle.__class__(**{**bundle.__dict__, "num_classes": 5})
    with pytest.raises(DatasetError) as info:
        memory_trainer(tmp_path / "b", five, epochs=1, resume=best)
    assert str(info.value) == f"fashion-mnist: 5 classes, but the checkpoint {best} predicts 10"
    rgb = bundle.__class__(**{**bundle.__dict__, "in_channels": 3})
    with pytest.raises(DatasetError) as info:
        memory_trainer(tmp_path / "b", rgb, epochs=1, resume=best)
    assert str(info.value) == (
        f"fashion-mnist: 3-channel 28x28 images, but the checkpoint {best} takes 1-channel 28x28 images"
    )
    bigger = bundle.__class__(**{**bundle.__dict__, "image_size": 32})
    with pytest.raises(DatasetError, match=r"1-channel 32x32 images, but the checkpoint .* takes 1-channel 28x28"):
        memory_trainer(tmp_path / "b", bigger, epochs=1, resume=best)


def test_the_same_number_of_epochs_as_planned_resumes(tmp_path: Path) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    with pytest.raises(TrainingDiverged):  # stop after epoch 1 of 3 (the only way to leave a run unfinished here)
        trainer = memory_trainer(tmp_path / "a", bundle, epochs=3)
        trainer.model.forward = nan_in_epoch(trainer, 2)
        trainer.fit()
    resumed = memory_trainer(tmp_path / "a", bundle, epochs=3, resume=tmp_path / "a" / CHECKPOINT)
    assert resumed.full_resume and resumed.start_epoch == 1


def test_more_epochs_than_a_checkpoint_planned_is_refused_in_full(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run), bundle=bundle, callbacks=[]).fit()
    last = run / CHECKPOINT
    with pytest.raises(ConfigError) as info:
        Trainer(memory_config(tmp_path / "more", epochs=2), bundle=bundle, callbacks=[], resume=last)
    assert str(info.value) == (
        f"epochs: 2 epochs asked, but {last} belongs to a run planned for 1: its learning-rate schedule ends there, "
        "so an exact resume would train the extra epochs at learning rate 0. To train longer, fine-tune from "
        f"{run / BEST} (weights only) with a new schedule"
    )
    tuned = Trainer(memory_config(tmp_path / "tuned", epochs=2), bundle=bundle, callbacks=[], resume=run / BEST)
    assert not tuned.full_resume and tuned.scheduler.total_steps == 12  # weights only: a new 2-epoch schedule
    state = load_checkpoint(last)
    del state["config"]["epochs"]  # a checkpoint that does not say its plan: the configuration's is taken
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    assert Trainer(memory_config(tmp_path / "old2", epochs=2), bundle=bundle, callbacks=[],
                   resume=tmp_path / "old" / CHECKPOINT).full_resume  # fmt: skip


def test_pretrained_weights_and_a_checkpoint_to_fine_tune_from_are_refused_together(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run), bundle=bundle, callbacks=[]).fit()
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError) as info:
        Trainer(memory_config(tmp_path / "a", pretrained=missing), bundle=bundle, callbacks=[], resume=run / BEST)
    assert str(info.value) == (
        f"pretrained: fine-tuning from {run / BEST} already gives the weights: pretrained weights or a checkpoint to "
        "fine-tune from, not both"
    )
    exact = Trainer(memory_config(run, pretrained=missing), bundle=bundle, callbacks=[], resume=run / CHECKPOINT)
    assert exact.full_resume and exact.pretrained is None  # the checkpoint has the weights: the file is not read


def test_a_checkpoint_without_the_later_fields_resumes_with_their_defaults(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    for key in ("best_robust_top1", "last_robust_top1", "best_ema", "rng_ranks"):
        del state[key]
    state["epoch"], state["best_top1"] = 0, 12.5
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    resumed = Trainer(memory_config(None, epochs=2), bundle=bundle, callbacks=[], resume=tmp_path / "old" / CHECKPOINT)
    resumed.log.close()
    assert (resumed.best_robust_top1, resumed.last_robust_top1, resumed.best_ema) == (0.0, None, None)
    assert (resumed.start_epoch, resumed.step, resumed.best_top1) == (1, 12, 12.5)
    assert resumed.run_dir == tmp_path / "old"  # no --out: the checkpoint's own directory


def test_a_full_state_keeps_each_ranks_random_state_and_the_world_size(tmp_path: Path) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    two = Trainer(memory_config(tmp_path / "two"), bundle=bundle, callbacks=[], dist=TwoRanks(rank=0, world_size=2))
    two.log.close()
    state = two._state(0, full=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2  # every rank's (here the same, gathered twice)
    assert all(torch.equal(r["torch"], state["rng"]["torch"]) for r in state["rng_ranks"])
    one = Trainer(memory_config(tmp_path / "one"), bundle=bundle, callbacks=[])
    one.log.close()
    state = one._state(0, full=True)
    assert (state["world_size"], state["rng_ranks"]) == (1, None)


def test_a_rank_restores_its_own_random_state_or_reseeds_on_another_world_size(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    state["epoch"] = 0
    own = [capture_rng(torch.Generator().manual_seed(100 + r)) for r in range(2)]
    save_checkpoint({**state, "rng_ranks": own}, tmp_path / "two" / CHECKPOINT)
    save_checkpoint(state, tmp_path / "one" / CHECKPOINT)

    def resume(path: Path, rank: int) -> Trainer:
        world = TwoRanks(rank=rank, world_size=2)
        return Trainer(memory_config(tmp_path / "x", epochs=2), bundle=bundle, callbacks=[], dist=world, resume=path)

    second = resume(tmp_path / "two" / CHECKPOINT, 1)  # same world size: rank 1's own state
    assert second.generator.initial_seed() == 101 and torch.equal(torch.get_rng_state(), own[1]["torch"])
    assert resume(tmp_path / "two" / CHECKPOINT, 0).generator.initial_seed() == 100
    second = resume(tmp_path / "one" / CHECKPOINT, 1)  # saved by one process: its state, then rank 1's own seed
    assert second.generator.initial_seed() == 7 and torch.initial_seed() == 7 + 12 + 1_000_003
    first = resume(tmp_path / "one" / CHECKPOINT, 0)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"]) and first.generator.initial_seed() == 7


def test_resuming_a_finished_run_trains_nothing_and_returns_its_best(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    best = Trainer(memory_config(run), bundle=bundle, callbacks=[]).fit()["best_top1"]
    done = Trainer(memory_config(run), bundle=bundle, callbacks=[], resume=run / CHECKPOINT)
    assert done.start_epoch == 1 and done.fit() == {"run_dir": str(run), "best_top1": best}


# --start-epoch fast-forwards the schedule before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_a_resume_carries_over_exactly_the_records_through_its_checkpoints_epoch(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run, epochs=2), bundle=bundle, callbacks=[]).fit()
    records = read_records(run)
    state = load_checkpoint(run / CHECKPOINT)
    state["epoch"] = 0  # as if killed in epoch 1: its records are in metrics.jsonl, its checkpoint is epoch 0's
    save_checkpoint(state, tmp_path / "old" / CHECKPOINT)
    (tmp_path / "old" / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    resumed = Trainer(
        memory_config(tmp_path / "new", epochs=2), bundle=bundle, callbacks=[], resume=tmp_path / "old" / CHECKPOINT
    )
    resumed.log.close()
    assert read_records(tmp_path / "new") == [r for r in records if r["epoch"] == 0] != []
    partial = tmp_path / "partial"  # old records, no checkpoint: a new run (fine-tuning) starts an empty log
    partial.mkdir()
    (partial / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    Trainer(memory_config(partial, epochs=2, start_epoch=1), bundle=bundle, callbacks=[], resume=run / BEST).log.close()
    assert (partial / "metrics.jsonl").read_text() == ""
