"""Resume as a user meets it: a moved or copied run, and a request for more epochs than the run planned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from visionlab.cli import main
from visionlab.engine import BEST, CHECKPOINT, TrainConfig, Trainer, load_checkpoint
from visionlab.errors import ConfigError

from ..conftest import Stop, StopAt


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
