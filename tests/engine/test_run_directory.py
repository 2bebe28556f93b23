"""The run directory: its default name and ``config.yaml``, the files a trained run leaves there (and that the
tiny model learned), and a directory already holding another run's checkpoints refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from visionlab.engine import (
    BEST,
    CHECKPOINT,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from visionlab.errors import ConfigError
from visionlab.report import PlotCurves

from ..conftest import make_fashion_mnist
from ..statistical import Statistic
from .builders import (
    TRAIN_LABELS,
    VAL,
    file_config,
    memory_bundle,
    memory_config,
)


def test_the_default_run_directory_and_its_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(TrainConfig(epochs=2, batch_size=16, workers=0, progress=False, tensorboard=False),
                      bundle=memory_bundle(TRAIN_LABELS, VAL))  # fmt: skip
    run = trainer.run_dir
    assert run.parent == Path("runs") and run.name.startswith("simplenet-fashion-mnist-")
    stamp = run.name.removeprefix("simplenet-fashion-mnist-")
    assert len(stamp) == 15 and stamp[8] == "-" and stamp.replace("-", "").isdigit()  # %Y%m%d-%H%M%S
    stored = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert stored == trainer.cfg.to_dict()
    assert list(stored) == list(trainer.cfg.to_dict())  # in field order, as written
    assert (run / "metrics.jsonl").read_text() == ""


@pytest.mark.statistical(seed=0)
def test_run_directory_contents_and_learning(tmp_path: Path, stat_seed: int, stat: Statistic) -> None:
    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', n_train=320, n_test=64, seed=stat_seed)}"
    cfg = file_config(
        data, tmp_path / "run", tensorboard=True, epochs=4, optimizer="adamw", lr=3e-3, seed=stat_seed + 7
    )
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


@pytest.mark.parametrize("taken", [[BEST], [CHECKPOINT, BEST]])
def test_a_directory_with_another_runs_checkpoints_is_refused_in_full(tmp_path: Path, taken: list[str]) -> None:
    run = tmp_path / "deep" / "er" / "run"
    run.mkdir(parents=True)
    for name in taken:
        (run / name).write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        Trainer(memory_config(run), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[])
    assert str(info.value) == (
        f"out: {run} already holds a run ({', '.join(taken)}): writing there would replace it. Resume it with "
        f"--resume {run / CHECKPOINT}, or choose another directory"
    )
    fresh = tmp_path / "new" / "nested" / "run"
    Trainer(memory_config(fresh), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]).log.close()  # parents made
    Trainer(
        memory_config(fresh), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]
    ).log.close()  # an existing empty run dir
    assert (fresh / "config.yaml").is_file()
