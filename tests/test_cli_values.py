"""``visionlab.cli`` function by function, in process, with stand-ins where a command would train or read data:
the exact config a command line resolves to, the exact lines and JSON printed, the exact arguments handed on,
and every message compared whole."""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch

import visionlab.runtime.distributed as distributed
from visionlab import cli
from visionlab.cli import CLIError, build_parser, common, evaluate, main, run, train, train_config_from_args
from visionlab.engine import TrainConfig, save_checkpoint
from visionlab.errors import CheckpointError, ConfigError, DatasetError
from visionlab.models import build_model


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _state(*, optimizer: bool = False, conv: str = "native", image_size: int = 28, in_channels: int = 1, **config):
    """A simplenet checkpoint's dict (model_best without ``optimizer``, checkpoint.pth.tar with it)."""
    args = dict(name="simplenet", num_classes=10, in_channels=in_channels, image_size=image_size,
                mean=[0.5] * in_channels, std=[0.25] * in_channels, conv=conv)  # fmt: skip
    state = {"model": build_model(**args).state_dict(), "config": {**TrainConfig().to_dict(), **config},
             "model_args": args, "recipe": "small", "epoch": 1, "step": 4, "best_top1": 10.0}  # fmt: skip
    if optimizer:
        state["optimizer"] = {}
    return state


def _save(state: dict[str, Any], path: Path) -> Path:
    save_checkpoint(state, path)
    return path


# ------------------------------------------------------------------------------------------------ train flags
def test_switches_become_their_fields() -> None:
    """The store_true switches map to conv, check_images, progress, quiet and tensorboard; nothing else moves."""
    cfg, resume = train_config_from_args(
        _args("train", "--use-custom-conv", "--no-check-images", "--no-tensorboard", "-q", "--model", "improved")
    )
    assert resume is None
    assert (cfg.conv, cfg.check_images, cfg.tensorboard, cfg.progress, cfg.quiet) == (
        "custom",
        False,
        False,
        False,
        True,
    )
    cfg, _ = train_config_from_args(_args("train", "--no-progress"))
    assert (cfg.conv, cfg.check_images, cfg.tensorboard, cfg.progress, cfg.quiet) == (
        "native",
        True,
        True,
        False,
        False,
    )
    cfg, _ = train_config_from_args(_args("train"))
    assert (cfg.progress, cfg.quiet, cfg.cache_images, cfg.amp, cfg.tta, cfg.freeze_backbone) == (
        True, False, False, False, False, False,
    )  # fmt: skip


@pytest.fixture
def three_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's default number of DataLoader workers is 3 (whatever its CPUs)."""
    monkeypatch.setattr(distributed, "default_workers", lambda: 3)


def test_a_namespace_without_the_switches_is_the_defaults(three_workers: None) -> None:
    """A namespace holding none of the optional switches (main.py's, a library caller's) resolves to defaults,
    the machine's number of workers included."""
    cfg, resume = train_config_from_args(argparse.Namespace(data="folder:/x", model="simplenet"))
    assert resume is None and cfg == TrainConfig(data="folder:/x", workers=3)


def test_given_flags_win_over_the_recipe_and_the_recipe_over_defaults() -> None:
    """Fashion-MNIST simplenet: recipe values except the flags given, every given field passed through."""
    argv = ["train", "--lr", "0.02", "--epochs", "2", "--wd", "0.5", "--augment", "none", "--ema", "0.9",
            "--compile", "--amp", "--channels-last", "--out", "o", "--seed", "3", "-p", "7"]  # fmt: skip
    cfg, _ = train_config_from_args(_args(*argv))
    assert (cfg.optimizer, cfg.batch_size, cfg.warmup) == ("adamw", 128, 0.5)  # the recipe
    assert (cfg.lr, cfg.epochs, cfg.weight_decay, cfg.augment, cfg.ema, cfg.compile) == (
        0.02, 2, 0.5, "none", 0.9, "inductor",
    )  # fmt: skip
    assert (cfg.amp, cfg.channels_last, cfg.out, cfg.seed, cfg.print_freq) == (True, True, "o", 3, 7)


def test_the_recipe_is_the_given_models() -> None:
    """--model improved on Fashion-MNIST takes improved's recipe, not simplenet's."""
    cfg, _ = train_config_from_args(_args("train", "--model", "improved"))
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.label_smoothing, cfg.tta) == ("improved", 10, 5e-3, 0.1, True)
    assert cfg.model_kwargs == dict(widths=[16, 32, 64, 128, 256], depths=[1, 1, 1, 1, 1])


def test_a_file_dataset_gets_the_default_recipe(three_workers: None) -> None:
    """A folder: dataset is no Fashion-MNIST: TrainConfig's defaults, the data spec kept whole."""
    cfg, _ = train_config_from_args(_args("train", "--data", "folder:/some/where", "--image-size", "32"))
    assert cfg == TrainConfig(data="folder:/some/where", image_size=32, workers=3)


def test_workers_given_or_from_the_recipe_win_over_the_machines_default(three_workers: None) -> None:
    """-j N is N (0 too); the ViT's Fashion-MNIST recipe sets 1; otherwise the machine's default."""
    assert train_config_from_args(_args("train", "--data", "folder:/x", "-j", "1"))[0].workers == 1
    assert train_config_from_args(_args("train", "-j", "0"))[0].workers == 0
    assert train_config_from_args(_args("train", "--model", "vit"))[0].workers == 1
    assert train_config_from_args(_args("train"))[0].workers == 3


def test_flags_are_checked_before_the_checkpoint_is_read(tmp_path: Path) -> None:
    """A bad flag is refused even with a --resume that does not exist."""
    with pytest.raises(ConfigError) as caught:
        train_config_from_args(_args("train", "--resume", str(tmp_path / "none"), "--adv-eps", "-1"))
    assert caught.value.field == "adv_eps"


def test_fine_tuning_takes_the_architecture_and_data_from_the_checkpoint(tmp_path: Path) -> None:
    """model_best: model, conv and data from the checkpoint; a file dataset decoded at the model's size."""
    ckpt = _save(_state(conv="custom", data="fashion-mnist"), tmp_path / "best.pth.tar")
    cfg, resume = train_config_from_args(_args("train", "--resume", str(ckpt), "--lr", "0.01"))
    assert resume == str(ckpt)
    assert (cfg.model, cfg.conv, cfg.data, cfg.lr, cfg.image_size, cfg.optimizer) == (
        "simplenet", "custom", "fashion-mnist", 0.01, None, "adamw",
    )  # fmt: skip
    ckpt = _save(_state(image_size=40, in_channels=3, data="folder:/a"), tmp_path / "rgb.pth.tar")
    cfg, _ = train_config_from_args(_args("train", "--resume", str(ckpt), "--data", "folder:/b"))
    assert (cfg.data, cfg.image_size, cfg.conv, cfg.optimizer) == ("folder:/b", 40, "native", "sgd")
    cfg, _ = train_config_from_args(_args("train", "--resume", str(ckpt), "--image-size", "48"))
    assert (cfg.data, cfg.image_size) == ("folder:/a", 48)


def test_fine_tuning_a_checkpoint_without_a_conv_entry_is_native(tmp_path: Path) -> None:
    """Older checkpoints store no conv: the native one."""
    state = _state(conv="custom")
    del state["model_args"]["conv"]
    cfg, _ = train_config_from_args(_args("train", "--resume", str(_save(state, tmp_path / "m.pth.tar"))))
    assert cfg.conv == "native"


def test_an_exact_resume_keeps_the_stored_run_and_says_what_it_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """checkpoint.pth.tar: the stored config, out reset, run-time flags applied, others noted whole."""
    stored = dict(lr=0.05, seed=2, data="folder:/f")
    ckpt = _save(_state(optimizer=True, epochs=4, out="/old/run", **stored), tmp_path / "ck.pth.tar")
    argv = ["train", "--resume", str(ckpt), "--lr", "0.5", "--epochs", "6", "-j", "1", "--seed", "2",
            "--label-smoothing", "0.1", "--no-progress"]  # fmt: skip
    cfg, resume = train_config_from_args(_args(*argv))
    assert resume == str(ckpt)
    assert cfg == TrainConfig.from_dict({**_state(**stored)["config"], "epochs": 6, "workers": 1,
                                         "progress": False, "out": None})  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        "[visionlab] note: ignoring --lr 0.5: an exact resume keeps the checkpoint's 0.05 (fine-tune from "
        "model_best.pth.tar to change it)",
        "[visionlab] note: ignoring --label-smoothing 0.1: an exact resume keeps the checkpoint's 0.0 (fine-tune "
        "from model_best.pth.tar to change it)",
    ]
    cfg, _ = train_config_from_args(_args("train", "--resume", str(ckpt), "--out", "new"))
    assert cfg.out == "new"


@pytest.mark.parametrize(
    "model_args",
    [None, "simplenet", {"name": "simplenet", "num_classes": 10, "in_channels": 1}],
    ids=["missing", "not a dict", "no image_size"],
)
def test_a_checkpoint_without_a_whole_architecture_is_refused(model_args: Any, tmp_path: Path) -> None:
    """model_args must be a dict naming name, num_classes, in_channels and image_size."""
    state = {"model": {}, "config": {}}
    if model_args is not None:
        state["model_args"] = model_args
    path = _save(state, tmp_path / "w.pth.tar")
    with pytest.raises(CheckpointError) as caught:
        common.load_model_checkpoint(str(path))
    assert str(caught.value) == f"{path}: no model architecture stored (model_args); not a visionlab model checkpoint"


def test_a_checkpoint_with_exactly_the_four_architecture_keys_is_accepted(tmp_path: Path) -> None:
    """name, num_classes, in_channels and image_size are enough: nothing else is required."""
    args = {"name": "simplenet", "num_classes": 2, "in_channels": 1, "image_size": 28}
    path = _save({"model": {}, "config": {}, "model_args": args}, tmp_path / "m.pth.tar")
    assert common.load_model_checkpoint(str(path))["model_args"] == args


def test_check_options_reads_an_unset_device_as_auto() -> None:
    """--device unset is auto; another option unset is checked as None (and refused when it may not be)."""
    common.check_options(argparse.Namespace(device=None, limit_val=None, batch_size=3), "device", "limit_val")
    with pytest.raises(ConfigError) as caught:
        common.check_options(argparse.Namespace(device=None, batch_size=None), "device", "batch_size")
    assert caught.value.field == "batch_size"
    with pytest.raises(ConfigError) as caught:
        common.check_options(argparse.Namespace(device="tpu"), "device")
    assert caught.value.field == "device"


# ------------------------------------------------------------------------------------------------ train
class _Trainer:
    """Stands in for :class:`visionlab.engine.Trainer`: records what it is built with, returns a set result."""

    built: ClassVar[list[tuple[Any, Any]]] = []
    result: ClassVar[dict[str, Any]] = {}
    is_main = True

    def __init__(self, cfg: Any, resume: Any = None, callbacks: Any = None) -> None:
        _Trainer.built.append((cfg, resume))
        _Trainer.callbacks = callbacks
        self.dist = SimpleNamespace(is_main=_Trainer.is_main)

    def fit(self) -> dict[str, Any]:
        return _Trainer.result


@pytest.fixture
def trainer(monkeypatch: pytest.MonkeyPatch) -> type[_Trainer]:
    monkeypatch.setattr("visionlab.engine.Trainer", _Trainer)
    monkeypatch.setattr(_Trainer, "built", [])
    monkeypatch.setattr(_Trainer, "is_main", True)
    return _Trainer


def test_train_prints_the_result_and_the_run_directory(trainer: type[_Trainer], capsys) -> None:
    """The two lines of a finished run, numbers to three decimals."""
    trainer.result = {"val_top1": 91.23456, "val_top5": 99.5, "best_top1": 92.0, "run_dir": "runs/x"}
    assert main(["train", "--epochs", "2"]) == 0
    assert capsys.readouterr().out == "* Acc@1 91.235 Acc@5 99.500 (best Acc@1 92.000)\nrun directory: runs/x\n"
    assert [type(c).__name__ for c in trainer.callbacks] == ["PlotCurves"]  # the CLI draws curves.png
    ((cfg, resume),) = trainer.built
    assert cfg.epochs == 2 and resume is None


def test_train_with_nothing_left_to_do_says_so(trainer: type[_Trainer], capsys) -> None:
    """A run already at its last epoch reports that instead of accuracies."""
    trainer.result = {"run_dir": "runs/y"}
    assert main(["train", "--epochs", "3"]) == 0
    assert capsys.readouterr().out == "nothing to train: the run had already reached epoch 3\nrun directory: runs/y\n"


def test_train_on_another_rank_prints_nothing(trainer: type[_Trainer], capsys) -> None:
    """Under torchrun only rank 0 reports."""
    trainer.is_main = False
    trainer.result = {"run_dir": "runs/z"}
    assert main(["train"]) == 0
    assert capsys.readouterr().out == ""


def test_train_validates_the_whole_config_before_building_the_trainer(trainer: type[_Trainer], capsys) -> None:
    """A start epoch past the end is refused by the config check, before any Trainer exists."""
    assert main(["train", "--epochs", "2", "--start-epoch", "2"]) == 2
    assert capsys.readouterr().err == "visionlab: error: --start-epoch: must be in [0, epochs) = [0, 2), got 2\n"
    assert trainer.built == []


_IN_MEMORY = "is held in memory and batched without worker processes (leave -j unset)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-j", "1"], f"-j/--workers: fashion-mnist {_IN_MEMORY}"),
        (["--data", "cifar10:/c", "-j", "2"], f"-j/--workers: cifar10:/c {_IN_MEMORY}"),
        (["--data", "folder:/x", "--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; folder:/x names its own folder"),
        (["--data", "fashion-mnist:/p", "--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; fashion-mnist:/p names its own folder"),
        (["--adv-eps", "0.1"], "--adv-eps: used only with --adv-train or --select-by robust (the radius of their PGD)"),
        (["--robust-val", "100"],
         "--robust-val: used only with --adv-train or --select-by robust (the images their PGD validation attacks)"),
        (["--adv-step", "0.01"], "--adv-step: used only with --adv-train"),
        (["--adv-train", "fgsm-rs", "--adv-steps", "3"],
         "--adv-steps: used only with --adv-train pgd or trades (fgsm-rs and n-fgsm take one step)"),
        (["--adv-train", "n-fgsm", "--adv-steps", "3"],
         "--adv-steps: used only with --adv-train pgd or trades (fgsm-rs and n-fgsm take one step)"),
        (["--adv-train", "trades", "--adv-mix", "0.5"],
         "--adv-mix: used only with --adv-train pgd, fgsm-rs or n-fgsm (TRADES weighs its two terms by --trades-beta)"),
        (["--adv-mix", "0"],
         "--adv-mix: used only with --adv-train pgd, fgsm-rs or n-fgsm (TRADES weighs its two terms by --trades-beta)"),
        (["--adv-train", "pgd", "--trades-beta", "6"], "--trades-beta: used only with --adv-train trades"),
    ],
)  # fmt: skip
def test_train_refuses_a_flag_the_run_would_not_read(
    argv: list[str], message: str, trainer: type[_Trainer], capsys
) -> None:
    """One whole line, exit 2, and no Trainer: a flag accepted and not read would leave the user believing it ran."""
    assert main(["train", *argv]) == 2
    assert capsys.readouterr().err == f"visionlab: error: {message}\n"
    assert trainer.built == []


@pytest.mark.parametrize(
    "argv",
    [
        ["-j", "0"], ["--data", "folder:/x", "-j", "1"], ["--data", "fmnist", "--data-root", "/r"],
        ["--select-by", "robust", "--adv-eps", "0.2", "--robust-val", "10"],
        ["--adv-train", "fgsm-rs", "--adv-eps", "0.2", "--adv-step", "0.25", "--adv-mix", "0.5", "--robust-val", "10"],
        ["--adv-train", "n-fgsm", "--adv-step", "0.1", "--adv-mix", "0.5"],
        ["--adv-train", "pgd", "--adv-steps", "2", "--adv-step", "0.05", "--adv-mix", "0.5"],
        ["--adv-train", "trades", "--adv-steps", "2", "--adv-step", "0.05", "--trades-beta", "3"],
    ],
)  # fmt: skip
def test_train_takes_each_flag_where_the_run_reads_it(argv: list[str], trainer: type[_Trainer]) -> None:
    """The nearest combinations that are read: the flags reach the Trainer's config."""
    trainer.result = {"run_dir": "r"}
    assert main(["train", "--epochs", "2", *argv]) == 0
    ((cfg, _),) = trainer.built
    given = vars(_args("train", *argv))
    assert all(getattr(cfg, k) == v for k, v in given.items() if k in train._TRAIN_FIELDS and v is not None)


def test_an_exact_resume_refuses_workers_for_data_held_in_memory(tmp_path: Path) -> None:
    """-j is a run-time flag an exact resume applies: refused all the same for the stored Fashion-MNIST run."""
    ckpt = _save(_state(optimizer=True, data="fashion-mnist"), tmp_path / "ck.pth.tar")
    with pytest.raises(CLIError) as caught:
        train_config_from_args(_args("train", "--resume", str(ckpt), "-j", "2"))
    assert str(caught.value) == f"-j/--workers: fashion-mnist {_IN_MEMORY}"
    assert train_config_from_args(_args("train", "--resume", str(ckpt), "-j", "0"))[0].workers == 0


def test_train_on_a_folder_that_does_not_exist_names_the_folder(tmp_path: Path, capsys) -> None:
    """``--data folder:PATH`` with no PATH: one line about PATH itself, exit 2, and no run directory."""
    missing, out = tmp_path / "nonexistent", tmp_path / "run"
    assert main(["train", "--data", f"folder:{missing}", "--out", str(out), "--no-tensorboard"]) == 2
    assert capsys.readouterr().err == f"visionlab: error: dataset 'folder:{missing}': {missing}: no such directory\n"
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ eval
class _Split(list):
    """A validation split of seven items with a settable transform."""

    transform: Any = None


def _bundle(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> SimpleNamespace:
    val = _Split(range(7))
    return SimpleNamespace(num_classes=num_classes, in_channels=in_channels, image_size=image_size, val=val)


def test_eval_data_loads_the_checkpoints_dataset_as_stored(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """No --data: the stored spec and data root; --data and --data-root win; image size only for file kinds."""
    calls: list[tuple[str, dict[str, Any]]] = []
    bundle = _bundle()
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: calls.append((data, kw)) or bundle)
    state = _state(data="fashion-mnist", data_root="/stored")
    args = _args("eval", "--resume", "m.pth")
    assert common.eval_data(state, args) is bundle and bundle.val.transform is None
    assert calls.pop() == ("fashion-mnist", dict(data_root="/stored", image_size=None, check_images=True))
    args = _args("eval", "--resume", "m", "--data", "folder:/f", "--no-check-images")
    common.eval_data(state, args)
    assert calls.pop() == ("folder:/f", dict(data_root="/stored", image_size=28, check_images=False))
    common.eval_data(state, _args("eval", "--resume", "m", "--data", "fmnist", "--data-root", "/r"))
    assert calls.pop() == ("fmnist", dict(data_root="/r", image_size=None, check_images=True))
    assert capsys.readouterr().err == ""
    common.eval_data(_state(data="miniplaces:/m", image_size=64), _args("eval", "--resume", "m"))
    assert calls.pop()[1]["image_size"] == 64


def test_eval_data_refuses_data_flags_its_dataset_would_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-root for a spec with its own folder, -j N for data held in memory: refused before loading, unless
    ``strict`` is off (report: its flags apply to the runs that read them)."""
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: _bundle())
    cases = [
        (_state(data="folder:/f"), ["--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; folder:/f names its own folder"),
        (_state(), ["--data", "miniplaces:/m", "--data-root", "/r"],
         "--data-root: only --data fashion-mnist is looked up there; miniplaces:/m names its own folder"),
        (_state(), ["-j", "1"], f"-j/--workers: fashion-mnist {_IN_MEMORY}"),
        (_state(data="cifar10:/c"), ["-j", "4"], f"-j/--workers: cifar10:/c {_IN_MEMORY}"),
    ]  # fmt: skip
    for state, extra, message in cases:
        args = _args("eval", "--resume", "m", *extra)
        with pytest.raises(CLIError) as caught:
            common.eval_data(state, args)
        assert str(caught.value) == message
        common.eval_data(state, args, strict=False)
    common.eval_data(_state(data="folder:/f"), _args("eval", "--resume", "m", "-j", "1"))
    common.eval_data(_state(), _args("eval", "--resume", "m", "-j", "0", "--data-root", "/r"))


def test_eval_data_converts_images_the_model_does_not_take(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Other channels or size: one note, whole, and the checkpoint's eval transform on the validation split."""
    bundle = _bundle(in_channels=3, image_size=32)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: bundle)
    made: list[tuple[Any, ...]] = []
    monkeypatch.setattr("visionlab.data.eval_transform", lambda *a: made.append(a) or "T")
    state = _state(data="fashion-mnist")
    del state["recipe"]
    common.eval_data(state, _args("eval", "--resume", "m", "--data", "folder:/f"))
    assert capsys.readouterr().err == (
        "[visionlab] note: folder:/f has 3-channel 32x32 images, the checkpoint takes 1-channel 28x28: converting "
        "them (as predict does)\n"
    )
    assert bundle.val.transform == "T" and made == [("miniplaces", 28, 1)]
    bundle = _bundle(in_channels=1, image_size=32)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: bundle)
    common.eval_data(_state(), _args("eval", "--resume", "m"))
    assert made[-1] == ("small", 28, 1) and bundle.val.transform == "T"
    assert "fashion-mnist has 1-channel 32x32 images, the checkpoint takes 1-channel 28x28" in capsys.readouterr().err


def test_eval_data_refuses_another_number_of_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classes cannot be converted: the message names the data, both counts and the checkpoint."""
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: _bundle(num_classes=3))
    with pytest.raises(DatasetError) as caught:
        common.eval_data(_state(), _args("eval", "--resume", "ck.pth"))
    assert str(caught.value) == "fashion-mnist: 3 classes, but ck.pth predicts 10"


@pytest.fixture
def eval_stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """cmd_eval with its data, distribution, loader, model and evaluation replaced by recorders."""
    seen: dict[str, Any] = {"dist": SimpleNamespace(is_main=True)}
    ckpt = _save(_state(), tmp_path / "m.pth.tar")
    seen["ckpt"] = str(ckpt)
    monkeypatch.setattr("visionlab.data.load_dataset", lambda data, **kw: _bundle())

    def init(device: str) -> tuple[Any, str]:
        seen["device"] = device
        return seen["dist"], "dev"

    monkeypatch.setattr("visionlab.runtime.distributed.init_distributed", init)
    monkeypatch.setattr("visionlab.runtime.distributed.shard_dataset", lambda d, dist: ("shard", list(d), dist))
    monkeypatch.setattr(
        "visionlab.engine.make_loader", lambda shard, bs, **kw: seen.setdefault("loader", (shard, bs, kw)) and "L"
    )
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", lambda state, device: ("model", device))

    def evaluate(model: Any, loader: Any, device: Any, **kw: Any) -> dict[str, Any]:
        seen["evaluate"] = (model, loader, device, kw)
        return {"top1": 12.3456, "top5": 50.0, "n": 7, "loss": 2.5, "other": 1}

    monkeypatch.setattr("visionlab.engine.evaluate", evaluate)
    return seen


def test_eval_hands_its_options_on_and_prints_one_line(eval_stand_ins: dict[str, Any], tmp_path: Path, capsys) -> None:
    """-b, -j, --limit-val, --tta and --device reach the loader and evaluation; the line has three decimals."""
    seen = eval_stand_ins
    ckpt = _save(_state(data="folder:/f"), tmp_path / "folder.pth.tar")  # files: -j reads them
    argv = ["eval", "--resume", str(ckpt), "-b", "5", "-j", "3", "--limit-val", "4", "--tta", "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out == "* Acc@1 12.346 Acc@5 50.000\n"
    assert seen["device"] == "cpu"
    assert seen["loader"] == (("shard", [0, 1, 2, 3], seen["dist"]), 5, dict(train=False, workers=3, device="dev"))
    assert seen["evaluate"] == (("model", "dev"), "L", "dev", dict(tta=True, progress=True, dist=seen["dist"]))


def test_eval_json_defaults_and_no_progress(eval_stand_ins: dict[str, Any], three_workers: None, capsys) -> None:
    """--json prints exactly top1, top5, n and loss; defaults: auto device, 256 per batch, the machine's workers."""
    seen = eval_stand_ins
    assert main(["eval", "--resume", seen["ckpt"], "--json", "--no-progress"]) == 0
    assert capsys.readouterr().out == '{"top1": 12.3456, "top5": 50.0, "n": 7, "loss": 2.5}\n'
    assert seen["device"] == "auto"
    assert seen["loader"] == (("shard", list(range(7)), seen["dist"]), 256, dict(train=False, workers=3, device="dev"))
    assert seen["evaluate"][3] == dict(tta=False, progress=False, dist=seen["dist"])


def test_eval_on_another_rank_prints_nothing(eval_stand_ins: dict[str, Any], capsys) -> None:
    """Under torchrun only rank 0 prints, and the others show no progress."""
    eval_stand_ins["dist"].is_main = False
    assert main(["eval", "--resume", eval_stand_ins["ckpt"], "--json"]) == 0
    assert capsys.readouterr().out == ""
    assert eval_stand_ins["evaluate"][3]["progress"] is False


# ------------------------------------------------------------------------------------------------ predict
def _png(path: Path, size: tuple[int, int] = (6, 5)) -> Path:
    """An RGB PNG of random pixels (a resize or a crop changes its values)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


def test_image_paths_walks_directories_in_order(tmp_path: Path) -> None:
    """Files as given, directories recursively, sorted, image suffixes in any case, other files skipped."""
    a = _png(tmp_path / "d" / "b.png")
    b = _png(tmp_path / "d" / "sub" / "a.PNG")
    (tmp_path / "d" / "notes.txt").write_text("x")
    c = _png(tmp_path / "single.png")
    assert evaluate._image_paths([str(c), str(tmp_path / "d")]) == [c, a, b]


def test_image_paths_messages(tmp_path: Path) -> None:
    """A missing path, and nothing to classify, are one line each, whole."""
    with pytest.raises(CLIError) as caught:
        evaluate._image_paths([str(tmp_path / "none.png")])
    assert str(caught.value) == f"{tmp_path / 'none.png'}: no such image file or directory"
    (tmp_path / "empty").mkdir()
    for items in ([], [str(tmp_path / "empty")]):
        with pytest.raises(CLIError) as caught:
            evaluate._image_paths(items)
        assert str(caught.value) == (
            "predict: no images given (IMAGE paths, directories, or --data SPEC for its test split)"
        )


def test_predict_paths_of_a_dataset_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """--data: the test split by default, --split val on request; its messages whole."""
    test = SimpleNamespace(entries=[SimpleNamespace(path=Path("t1")), SimpleNamespace(path=Path("t2"))])
    val = SimpleNamespace(entries=[SimpleNamespace(path=Path("v1"))])
    loaded: list[str] = []
    monkeypatch.setattr(
        "visionlab.data.load_dataset", lambda spec: loaded.append(spec) or SimpleNamespace(test=test, val=val)
    )
    assert evaluate._predict_paths(_args("predict", "--resume", "m", "--data", "folder:/f")) == [Path("t1"), Path("t2")]
    args = _args("predict", "--resume", "m", "--data", "miniplaces:/m", "--split", "val")
    assert evaluate._predict_paths(args) == [Path("v1")]
    assert loaded == ["folder:/f", "miniplaces:/m"]
    monkeypatch.setattr("visionlab.data.load_dataset", lambda spec: SimpleNamespace(test=None, val=val))
    cases = [
        (["--data", "folder:/f"], "--data folder:/f: no test split (test.txt or images/test/); try --split val"),
        (["--data", "fashion-mnist:/x"], "--data fashion-mnist:/x: fashion-mnist keeps its images in arrays, not "
         "files; use eval"),
        (["x.png", "--data", "folder:/f"], "predict: give IMAGE paths or --data SPEC, not both"),
        (["x.png", "--split", "val"], "--split: only with --data SPEC (IMAGE paths are predicted as given)"),
        (["x.png", "--split", "test"], "--split: only with --data SPEC (IMAGE paths are predicted as given)"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(CLIError) as caught:
            evaluate._predict_paths(_args("predict", "--resume", "m", *extra))
        assert str(caught.value) == message


class _Logits(torch.nn.Module):
    """A model whose probabilities are known: class scores log(1..C) for every image."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.scores = torch.log(torch.arange(1, classes + 1, dtype=torch.float32))
        self.batches: list[tuple[int, ...]] = []
        self.inputs: list[torch.Tensor] = []
        self.devices: list[Any] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(tuple(x.shape))
        self.inputs.append(x)
        return self.scores.expand(len(x), -1).clone()

    def built(self, state: dict[str, Any], device: Any) -> _Logits:
        """Stands in for model_from_checkpoint, recording the device asked for."""
        self.devices.append(device)
        return self


def test_predict_prints_the_top_k_of_each_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """Text and JSON lines, k capped at the number of classes, batches of -b, images converted for the model."""
    from visionlab.data import eval_transform
    from visionlab.data.decode import read_image

    model = _Logits(4)
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", model.built)
    state = _state(in_channels=3)
    state["model_args"]["num_classes"] = 4
    state["class_names"] = ["ant", "bee", "cat", "dog"]
    ckpt = _save(state, tmp_path / "m.pth.tar")
    images = [_png(tmp_path / "i" / f"{k}.png") for k in range(3)]
    argv = ["predict", "--resume", str(ckpt), "--topk", "2", "-b", "2", "--device", "cpu", str(tmp_path / "i")]
    assert main(argv) == 0
    block = "{}\n   40.00%  dog\n   30.00%  cat\n"
    assert capsys.readouterr().out == "".join(block.format(p) for p in images)
    assert model.batches == [(2, 3, 28, 28), (1, 3, 28, 28)] and model.devices == [torch.device("cpu")]
    assert torch.equal(model.inputs[1][0], eval_transform("small", 28, 3)(read_image(images[2])))
    assert main(["predict", "--resume", str(ckpt), "--topk", "9", "--json", str(images[0])]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == str(images[0]) and [(t["class"], t["index"]) for t in line["top"]] == [
        ("dog", 3), ("cat", 2), ("bee", 1), ("ant", 0),
    ]  # fmt: skip
    assert [t["prob"] for t in line["top"]] == pytest.approx([0.4, 0.3, 0.2, 0.1])


def test_predict_without_class_names_numbers_the_classes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """A checkpoint without class names or recipe: class indices as names, the miniplaces transform; top-5."""
    from visionlab.data import eval_transform
    from visionlab.data.decode import read_image

    model = _Logits(10)
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", model.built)
    state = _state()
    del state["recipe"]
    ckpt = _save(state, tmp_path / "m.pth.tar")
    image = _png(tmp_path / "a.png", (40, 30))
    assert main(["predict", "--resume", str(ckpt), str(image)]) == 0
    shares = [100 * k / 55 for k in (10, 9, 8, 7, 6)]
    assert capsys.readouterr().out == f"{image}\n" + "".join(
        f"  {s:6.2f}%  {k}\n" for s, k in zip(shares, (9, 8, 7, 6, 5), strict=True)
    )
    assert model.batches == [(1, 1, 28, 28)] and model.devices == [torch.device("cpu")]  # auto: the CPU here
    assert torch.equal(model.inputs[0][0], eval_transform("miniplaces", 28, 1)(read_image(image)))
    assert not torch.equal(model.inputs[0][0], eval_transform("small", 28, 1)(read_image(image)))
    assert math.isclose(sum(shares), 100 * 40 / 55)


def test_predict_an_image_that_cannot_be_decoded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """A broken file is a data error naming it and the decoder's reason."""
    monkeypatch.setattr("visionlab.engine.model_from_checkpoint", lambda state, device: _Logits(10))
    ckpt = _save(_state(), tmp_path / "m.pth.tar")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", "--resume", str(ckpt), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"visionlab: error: {bad}: cannot decode image (") and err.endswith(")\n")


# ------------------------------------------------------------------------------------------------ other commands
def test_compare_hands_the_runs_output_and_labels_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """compare: every RUN_DIR checked first, then one figure; default compare.png."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "visionlab.report.plot_runs", lambda runs, out, labels: calls.append((runs, out, labels)) or out
    )
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("")
        runs.append(str(tmp_path / name))
    assert main(["compare", *runs, "--labels", "x", "y"]) == 0
    assert main(["compare", runs[0], "-o", "f.png"]) == 0
    assert capsys.readouterr().out == "wrote compare.png\nwrote f.png\n"
    assert calls == [(runs, "compare.png", ["x", "y"]), ([runs[0]], "f.png", None)]
    assert main(["compare", runs[0], str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"visionlab: error: {tmp_path}: not a run directory (no metrics.jsonl)\n"
    assert len(calls) == 2


@pytest.fixture
def fetchers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, dict[str, Any]]]:
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    monkeypatch.setattr("visionlab.data.fetch_fashion_mnist", lambda root, **kw: calls.append(("fm", root, kw)) or "F")
    monkeypatch.setattr("visionlab.data.fetch_miniplaces", lambda root, **kw: calls.append(("mp", root, kw)) or "M")
    return calls


def test_data_fetch_passes_its_options_on(fetchers: list[tuple[str, Any, dict[str, Any]]], capsys) -> None:
    """Each dataset's fetcher gets the root and options; miniplaces falls back to MIT's and the devkit's URLs."""
    from visionlab.data.fetch import MINIPLACES_DEVKIT_URL, MINIPLACES_URL

    assert main(["data", "fetch", "fashion-mnist", "--root", "/r", "--force"]) == 0
    assert main(["data", "fetch", "fashion-mnist"]) == 0
    assert main(["data", "fetch", "miniplaces"]) == 0
    argv = ["data", "fetch", "miniplaces", "--root", "/d", "--url", "u", "--sha256", "ab", "--devkit-url", "k",
            "--force", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == "F\nF\nM\nM\n"
    assert fetchers == [
        ("fm", "/r", dict(force=True)),
        ("fm", None, dict(force=False)),
        ("mp", None, dict(url=MINIPLACES_URL, sha256=None, devkit_url=MINIPLACES_DEVKIT_URL, force=False,
                          show_progress=True)),
        ("mp", "/d", dict(url="u", sha256="ab", devkit_url="k", force=True, show_progress=False)),
    ]  # fmt: skip


@pytest.mark.parametrize("flag", ["--url", "--sha256", "--devkit-url"])
def test_data_fetch_refuses_miniplaces_options_for_fashion_mnist(
    flag: str, fetchers: list[tuple[str, Any, dict[str, Any]]], capsys
) -> None:
    """--url, --sha256 and --devkit-url are miniplaces' only: one line naming the flag, nothing fetched."""
    assert main(["data", "fetch", "fashion-mnist", flag, "x"]) == 2
    assert capsys.readouterr().err == (
        f"visionlab: error: {flag}: only for miniplaces (fashion-mnist's sources and checksums are built in)\n"
    )
    assert fetchers == []


def test_models_lists_each_name_padded_to_twelve(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """One line per registered model: the name in 12 columns, then its summary."""
    monkeypatch.setattr("visionlab.models.list_models", lambda: {"tiny": "a small net", "averyverylongname": "b"})
    assert main(["models"]) == 0
    assert capsys.readouterr().out == "tiny         a small net\naveryverylongname b\n"


# ------------------------------------------------------------------------------------------------ main and run
def test_main_speaks_in_the_prog_and_flags_it_is_given(capsys) -> None:
    """main.py's name and flag spellings reach the error line."""
    assert main(["train", "--epochs", "0"], prog="front", flags={"epochs": "-E"}) == 2
    assert capsys.readouterr().err == "front: error: -E: must be an integer >= 1, got 0\n"


def test_a_command_is_required(capsys) -> None:
    """No command is a usage error naming the commands."""
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith("visionlab: error: the following arguments are required: command\n")
    with pytest.raises(SystemExit):
        main(["data"])
    assert capsys.readouterr().err.endswith("error: the following arguments are required: data_command\n")


def test_run_returns_the_commands_status_and_leaves_the_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command's own status comes back; an initialised process group is destroyed afterwards, also on error."""
    import torch.distributed as dist

    destroyed: list[bool] = []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    assert run(lambda args: 7, argparse.Namespace()) == 7
    assert run(lambda args: {}["x"], argparse.Namespace()) == 1
    assert destroyed == [True, True]
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    assert run(lambda args: 0, argparse.Namespace()) == 0
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "is_available", lambda: False)
    assert run(lambda args: 0, argparse.Namespace()) == 0
    assert destroyed == [True, True]


@pytest.mark.parametrize(
    "code",
    [errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
     errno.ENAMETOOLONG],
)  # fmt: skip
def test_each_environment_os_error_is_one_line(code: int, capsys) -> None:
    """Every errno of the machine or the paths given is a user error: exit 2, file and reason."""

    def fail(args: argparse.Namespace) -> int:
        raise OSError(code, "why", "/p")

    assert run(fail, argparse.Namespace(), prog="p") == 2
    assert capsys.readouterr().err == "p: error: /p: why\n"


def test_an_internal_error_names_the_prog(capsys) -> None:
    """A bug: the traceback, then the report request under the given prog."""
    assert run(lambda args: 1 / 0, argparse.Namespace(), prog="main.py") == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and "ZeroDivisionError: division by zero\n" in err
    assert err.endswith("main.py: internal error (a bug in visionlab): please report it with the traceback above\n")


def test_an_unexpected_os_error_is_a_bug_of_the_given_prog(capsys) -> None:
    """An OSError of no environment errno is a bug reported under the given prog."""

    def fail(args: argparse.Namespace) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x")

    assert run(fail, argparse.Namespace(), prog="main.py") == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError: [Errno 2] No such file: '/x'\n" in err
    assert err.endswith("\nmain.py: internal error (a bug in visionlab): please report it with the traceback above\n")


def test_a_diverged_run_uses_the_given_flags(capsys) -> None:
    """The divergence advice speaks in the flags table handed to run."""
    from visionlab.engine import TrainingDiverged

    def diverge(args: argparse.Namespace) -> int:
        raise TrainingDiverged("loss is nan")

    flags = {"lr": "-L", "warmup": "-W", "clip_grad": "-C"}
    assert run(diverge, argparse.Namespace(), prog="p", flags=flags) == 3
    assert capsys.readouterr().err == "p: training diverged: loss is nan. Lower -L, raise -W or keep -C above 0.\n"


def test_format_user_error_keeps_a_worker_message_without_a_colon() -> None:
    """A DataLoader worker's re-raised error keeps only its last line's message; a last line without one keeps all."""
    text = "Caught X in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\nlast line\n"
    assert cli.format_user_error(DatasetError(text)) == text
    text = "Caught X.\nOriginal Traceback (most recent call last):\nDatasetError: a: b: c\n\n"
    assert cli.format_user_error(DatasetError(text)) == "a: b: c"


def test_a_closed_pipe_points_stdout_at_devnull(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After a broken pipe, stdout's descriptor is /dev/null, so the final flush cannot fail again."""
    target = open(tmp_path / "out", "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", target)

    def pipe(args: argparse.Namespace) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    try:
        assert run(pipe, argparse.Namespace()) == 141
        target.write("lost")
        target.flush()
    finally:
        target.close()
    assert (tmp_path / "out").read_text() == ""


def test_silencing_a_captured_stdout_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stdout without a descriptor (captured) is left alone."""
    import io

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    cli._silence_stdout()
    assert sys.stdout is buffer
