"""``visionlab train`` and ``compare`` (:mod:`visionlab.cli.train`) in process, with a stand-in Trainer: the exact
config a command line resolves to (flags, recipes, fine-tuning, exact resume), the flags refused because the run
would not read them, the lines printed whole, and what compare hands the plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from visionlab.cli import CLIError, main, train, train_config_from_args
from visionlab.engine import TrainConfig
from visionlab.errors import ConfigError

from .builders import IN_MEMORY, model_state, parse_argv, save_state


# ------------------------------------------------------------------------------------------------ train flags
def test_switches_become_their_fields() -> None:
    """The store_true switches map to conv, check_images, progress, quiet and tensorboard; nothing else moves."""
    cfg, resume = train_config_from_args(
        parse_argv("train", "--use-custom-conv", "--no-check-images", "--no-tensorboard", "-q", "--model", "improved")
    )
    assert resume is None
    assert (cfg.conv, cfg.check_images, cfg.tensorboard, cfg.progress, cfg.quiet) == (
        "custom",
        False,
        False,
        False,
        True,
    )
    cfg, _ = train_config_from_args(parse_argv("train", "--no-progress"))
    assert (cfg.conv, cfg.check_images, cfg.tensorboard, cfg.progress, cfg.quiet) == (
        "native",
        True,
        True,
        False,
        False,
    )
    cfg, _ = train_config_from_args(parse_argv("train"))
    assert (cfg.progress, cfg.quiet, cfg.cache_images, cfg.amp, cfg.tta, cfg.freeze_backbone, cfg.deterministic) == (
        True, False, False, False, False, False, True,
    )  # fmt: skip
    assert not train_config_from_args(parse_argv("train", "--no-deterministic"))[0].deterministic


def test_a_namespace_without_the_switches_is_the_defaults(three_workers: None) -> None:
    """A namespace holding none of the optional switches (main.py's, a library caller's) resolves to defaults,
    the machine's number of workers included."""
    cfg, resume = train_config_from_args(argparse.Namespace(data="folder:/x", model="simplenet"))
    assert resume is None and cfg == TrainConfig(data="folder:/x", workers=3)


def test_given_flags_win_over_the_recipe_and_the_recipe_over_defaults() -> None:
    """Fashion-MNIST simplenet: recipe values except the flags given, every given field passed through."""
    argv = ["train", "--lr", "0.02", "--epochs", "2", "--wd", "0.5", "--augment", "none", "--ema", "0.9",
            "--compile", "--amp", "--channels-last", "--out", "o", "--seed", "3", "-p", "7"]  # fmt: skip
    cfg, _ = train_config_from_args(parse_argv(*argv))
    assert (cfg.optimizer, cfg.batch_size, cfg.warmup) == ("adamw", 128, 0.5)  # the recipe
    assert (cfg.lr, cfg.epochs, cfg.weight_decay, cfg.augment, cfg.ema, cfg.compile) == (
        0.02, 2, 0.5, "none", 0.9, "inductor",
    )  # fmt: skip
    assert (cfg.amp, cfg.channels_last, cfg.out, cfg.seed, cfg.print_freq) == (True, True, "o", 3, 7)


def test_the_recipe_is_the_given_models() -> None:
    """--model improved on Fashion-MNIST takes improved's recipe, not simplenet's."""
    cfg, _ = train_config_from_args(parse_argv("train", "--model", "improved"))
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.label_smoothing, cfg.tta) == ("improved", 10, 5e-3, 0.1, True)
    assert cfg.model_kwargs == dict(widths=[16, 32, 64, 128, 256], depths=[1, 1, 1, 1, 1])


# The measured CPU recipe for Fashion-MNIST at eps 0.1 (BENCHMARKS.md, issue 27, "The robust recipe, restated"),
# spelled out flag by flag.
ROBUST_FLAGS = [
    "--data", "fashion-mnist", "--model", "improved", "--adv-train", "pgd", "--adv-steps", "3", "--adv-eps", "0.1",
    "--epochs", "14", "-b", "128", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--wd", "5e-4",
    "--warmup", "1", "--clip-grad", "0", "--label-smoothing", "0", "--ema", "0.999", "--select-by", "robust",
    "--robust-val", "1000",
]  # fmt: skip


def test_the_robust_recipe_is_the_measured_command_in_one_flag(three_workers: None) -> None:
    """--recipe robust resolves to the very TrainConfig of the long command; it sets model and data itself."""
    long, _ = train_config_from_args(parse_argv("train", *ROBUST_FLAGS))
    short, _ = train_config_from_args(parse_argv("train", "--data", "fashion-mnist", "--model", "improved",
                                                 "--recipe", "robust"))  # fmt: skip
    assert short == long
    assert train_config_from_args(parse_argv("train", "--recipe", "robust"))[0] == long
    assert (long.model_kwargs, long.channels_last, long.tta) == (
        dict(widths=[16, 32, 64, 128, 256], depths=[1, 1, 1, 1, 1]),
        True,
        True,
    )  # fmt: skip  (the five-stage network and the switches of the model's own recipe)


def test_flags_win_over_a_named_recipe(three_workers: None) -> None:
    argv = ["train", "--recipe", "robust", "--epochs", "3", "--ema", "0", "--swa-start", "2", "--adv-eps-ramp", "1"]
    cfg, _ = train_config_from_args(parse_argv(*argv))
    assert (cfg.epochs, cfg.ema, cfg.swa_start, cfg.adv_eps_ramp) == (3, 0.0, 2.0, 1.0)
    assert (cfg.adv_train, cfg.lr, cfg.select_by) == ("pgd", 0.1, "robust")  # the recipe's


def test_an_exact_resume_notes_that_it_ignores_a_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_state(model_state(optimizer=True, data="fashion-mnist"), tmp_path / "ck.pth.tar")
    cfg, _ = train_config_from_args(parse_argv("train", "--resume", str(ckpt), "--recipe", "robust"))
    assert cfg.adv_train is None
    assert capsys.readouterr().err == (
        "[visionlab] note: ignoring --recipe robust: an exact resume keeps the checkpoint's configuration\n"
    )


def test_a_file_dataset_gets_the_default_recipe(three_workers: None) -> None:
    """A folder: dataset is no Fashion-MNIST: TrainConfig's defaults, the data spec kept whole."""
    cfg, _ = train_config_from_args(parse_argv("train", "--data", "folder:/some/where", "--image-size", "32"))
    assert cfg == TrainConfig(data="folder:/some/where", image_size=32, workers=3)


def test_workers_given_or_from_the_recipe_win_over_the_machines_default(three_workers: None) -> None:
    """-j N is N (0 too); the ViT's Fashion-MNIST recipe sets 1; otherwise the machine's default."""
    assert train_config_from_args(parse_argv("train", "--data", "folder:/x", "-j", "1"))[0].workers == 1
    assert train_config_from_args(parse_argv("train", "-j", "0"))[0].workers == 0
    assert train_config_from_args(parse_argv("train", "--model", "vit"))[0].workers == 1
    assert train_config_from_args(parse_argv("train"))[0].workers == 3


def test_flags_are_checked_before_the_checkpoint_is_read(tmp_path: Path) -> None:
    """A bad flag is refused even with a --resume that does not exist."""
    with pytest.raises(ConfigError) as caught:
        train_config_from_args(parse_argv("train", "--resume", str(tmp_path / "none"), "--adv-eps", "-1"))
    assert caught.value.field == "adv_eps"


def test_fine_tuning_takes_the_architecture_and_data_from_the_checkpoint(tmp_path: Path) -> None:
    """model_best: model, conv and data from the checkpoint; a file dataset decoded at the model's size."""
    ckpt = save_state(model_state(conv="custom", data="fashion-mnist"), tmp_path / "best.pth.tar")
    cfg, resume = train_config_from_args(parse_argv("train", "--resume", str(ckpt), "--lr", "0.01"))
    assert resume == str(ckpt)
    assert (cfg.model, cfg.conv, cfg.data, cfg.lr, cfg.image_size, cfg.optimizer) == (
        "simplenet", "custom", "fashion-mnist", 0.01, None, "adamw",
    )  # fmt: skip
    ckpt = save_state(model_state(image_size=40, in_channels=3, data="folder:/a"), tmp_path / "rgb.pth.tar")
    cfg, _ = train_config_from_args(parse_argv("train", "--resume", str(ckpt), "--data", "folder:/b"))
    assert (cfg.data, cfg.image_size, cfg.conv, cfg.optimizer) == ("folder:/b", 40, "native", "sgd")
    cfg, _ = train_config_from_args(parse_argv("train", "--resume", str(ckpt), "--image-size", "48"))
    assert (cfg.data, cfg.image_size) == ("folder:/a", 48)


def test_fine_tuning_a_checkpoint_without_a_conv_entry_is_native(tmp_path: Path) -> None:
    """Older checkpoints store no conv: the native one."""
    state = model_state(conv="custom")
    del state["model_args"]["conv"]
    cfg, _ = train_config_from_args(parse_argv("train", "--resume", str(save_state(state, tmp_path / "m.pth.tar"))))
    assert cfg.conv == "native"


def test_an_exact_resume_keeps_the_stored_run_and_says_what_it_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """checkpoint.pth.tar: the stored config, out reset, run-time flags applied, others noted whole."""
    stored = dict(lr=0.05, seed=2, data="folder:/f")
    ckpt = save_state(model_state(optimizer=True, epochs=4, out="/old/run", **stored), tmp_path / "ck.pth.tar")
    argv = ["train", "--resume", str(ckpt), "--lr", "0.5", "--epochs", "6", "-j", "1", "--seed", "2",
            "--label-smoothing", "0.1", "--no-progress"]  # fmt: skip
    cfg, resume = train_config_from_args(parse_argv(*argv))
    assert resume == str(ckpt)
    assert cfg == TrainConfig.from_dict({**model_state(**stored)["config"], "epochs": 6, "workers": 1,
                                         "progress": False, "out": None})  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        "[visionlab] note: ignoring --lr 0.5: an exact resume keeps the checkpoint's 0.05 (fine-tune from "
        "model_best.pth.tar to change it)",
        "[visionlab] note: ignoring --label-smoothing 0.1: an exact resume keeps the checkpoint's 0.0 (fine-tune "
        "from model_best.pth.tar to change it)",
    ]
    cfg, _ = train_config_from_args(parse_argv("train", "--resume", str(ckpt), "--out", "new"))
    assert cfg.out == "new"


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


KNOWN_RECIPES = "robust (--model improved --data fashion-mnist)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-j", "1"], f"-j/--workers: fashion-mnist {IN_MEMORY}"),
        (["--data", "cifar10:/c", "-j", "2"], f"-j/--workers: cifar10:/c {IN_MEMORY}"),
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
        (["--adv-eps-ramp", "1"], "--adv-eps-ramp: used only with --adv-train (it ramps the radius of the training "
                                  "attack)"),
        (["--swa-every", "steps"], "--swa-every: used only with --swa-start"),
        (["--epochs", "2", "--adv-train", "pgd", "--adv-eps-ramp", "3"],
         "--adv-eps-ramp: must be in [0, epochs] = [0, 2] epochs, got 3.0"),
        (["--adv-eps-ramp", "-1"], "--adv-eps-ramp: must be a number >= 0, got -1.0"),
        (["--epochs", "2", "--swa-start", "2.5"],
         "--swa-start: must be in [0, epochs] = [0, 2] epochs, got 2.5: the average would never start"),
        (["--swa-start", "-0.5"], "--swa-start: must be a number >= 0, got -0.5"),
        (["--recipe", "fast"], f"--recipe: unknown recipe 'fast'; known recipes: {KNOWN_RECIPES}"),
        (["--recipe", "robust", "--model", "vit"],
         f"--recipe: recipe 'robust' is not for --model vit --data fashion-mnist; known recipes: {KNOWN_RECIPES}"),
        (["--recipe", "robust", "--data", "folder:/x"],
         f"--recipe: recipe 'robust' is not for --model improved --data folder; known recipes: {KNOWN_RECIPES}"),
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
        ["--adv-train", "fgsm-rs", "--adv-eps-ramp", "1.5"],
        ["--swa-start", "0.5", "--swa-every", "steps"],
        ["--swa-start", "2", "--ema", "0.99", "--adv-train", "pgd"],
    ],
)  # fmt: skip
def test_train_takes_each_flag_where_the_run_reads_it(argv: list[str], trainer: type[_Trainer]) -> None:
    """The nearest combinations that are read: the flags reach the Trainer's config."""
    trainer.result = {"run_dir": "r"}
    assert main(["train", "--epochs", "2", *argv]) == 0
    ((cfg, _),) = trainer.built
    given = vars(parse_argv("train", *argv))
    assert all(getattr(cfg, k) == v for k, v in given.items() if k in train._TRAIN_FIELDS and v is not None)


def test_an_exact_resume_refuses_workers_for_data_held_in_memory(tmp_path: Path) -> None:
    """-j is a run-time flag an exact resume applies: refused all the same for the stored Fashion-MNIST run."""
    ckpt = save_state(model_state(optimizer=True, data="fashion-mnist"), tmp_path / "ck.pth.tar")
    with pytest.raises(CLIError) as caught:
        train_config_from_args(parse_argv("train", "--resume", str(ckpt), "-j", "2"))
    assert str(caught.value) == f"-j/--workers: fashion-mnist {IN_MEMORY}"
    assert train_config_from_args(parse_argv("train", "--resume", str(ckpt), "-j", "0"))[0].workers == 0


def test_train_on_a_folder_that_does_not_exist_names_the_folder(tmp_path: Path, capsys) -> None:
    """``--data folder:PATH`` with no PATH: one line about PATH itself, exit 2, and no run directory."""
    missing, out = tmp_path / "nonexistent", tmp_path / "run"
    assert main(["train", "--data", f"folder:{missing}", "--out", str(out), "--no-tensorboard"]) == 2
    assert capsys.readouterr().err == f"visionlab: error: dataset 'folder:{missing}': {missing}: no such directory\n"
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ compare
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


# ------------------------------------------------------------------------------------------------ device input
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "miniplaces:/m", "--gpu-augment", "--device", "cpu"],
         "--gpu-augment: needs a CUDA device (here: cpu); --gpu-augment moves the augmentation to the GPU, and on the "
         "CPU the workers already do the same work"),
        (["--data", "miniplaces:/m", "--gpu-decode", "--device", "cpu"],
         "--gpu-decode: needs a CUDA device (here: cpu)"),
        (["--data", "folder:/f", "--cache-images", "device", "--device", "cpu"],
         "--cache-images: needs a CUDA device (here: cpu); --cache-images device moves"),
        (["--data", "folder:/f", "--cache-images", "pinned", "--device", "cpu"],
         "--cache-images: needs a CUDA device (here: cpu); --cache-images pinned moves"),
        (["--gpu-augment"], "--gpu-augment: augments file datasets (miniplaces, folder) on the device; fashion-mnist "
         "is held in memory and already augmented a batch at a time in the main process"),
        (["--data", "cifar10:/c", "--gpu-decode"], "--gpu-decode: augments file datasets (miniplaces, folder) on the "
         "device; cifar10 is held in memory"),
        (["--data", "miniplaces:/m", "--gpu-augment", "--augment", "flip"],
         "--gpu-augment: cannot honour augment 'flip': the device applies the MiniPlaces recipe of file datasets"),
        (["--data", "miniplaces:/m", "--gpu-decode", "--cache-images"],
         "--gpu-decode: not with cache_images: the cache already holds decoded images"),
    ],
)  # fmt: skip
def test_train_refuses_device_input_where_it_cannot_run(
    argv: list[str], message: str, trainer: type[_Trainer], capsys
) -> None:
    """One line naming the flag, exit 2, no Trainer: without CUDA, on data held in memory, with --augment."""
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"visionlab: error: {message}") and err.count("\n") == 1
    assert trainer.built == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--cache-images"], dict(cache_images=True, gpu_augment=False, gpu_decode=False)),
        (["--cache-images", "host"], dict(cache_images=True, gpu_augment=False, gpu_decode=False)),
        (["--cache-images", "device"], dict(cache_images="device", gpu_augment=False, gpu_decode=False)),
        (["--gpu-augment", "--cache-images", "pinned"], dict(cache_images="pinned", gpu_augment=True)),
        (["--gpu-decode"], dict(cache_images=False, gpu_decode=True)),
    ],
)
def test_device_input_flags_reach_the_config_on_cuda(
    argv: list[str], expected: dict, trainer: type[_Trainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a CUDA device (stood in for), the flags pass into TrainConfig; the bare --cache-images (and host) stays
    what it always was: true."""
    import torch

    monkeypatch.setattr("visionlab.runtime.select_device", lambda name="auto": torch.device("cuda"))
    trainer.result = {"run_dir": "runs/d"}
    assert main(["train", "--data", "miniplaces:/m", *argv]) == 0
    ((cfg, _),) = trainer.built
    assert {key: getattr(cfg, key) for key in expected} == expected
