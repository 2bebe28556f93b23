"""What constructing a Trainer builds before its first step (``engine/setup.py``): the device asked for, the
objective, the data loaded and the seeds drawn, the model and its stored architecture, the loaders, the
schedule and scaler, the robust monitor, the wrappers (DDP, ``torch.compile``), the amp warning, and the
refusals that come before any step: model arguments, sync_bn on the CPU, batch augmentation of files, fewer
training images than processes. Each pinned to a value on in-memory data (builders.py) or a tiny dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.cli import main as cli_main
from visionlab.data.memory import parse_augment
from visionlab.engine import (
    BEST,
    Callback,
    CheckpointError,
    ClassificationTask,
    TrainConfig,
    Trainer,
    load_checkpoint,
)
from visionlab.engine import trainer as trainer_module
from visionlab.engine.checkpoint import save_checkpoint
from visionlab.errors import ConfigError
from visionlab.models import architecture_kwargs, build_model
from visionlab.runtime.distributed import (
    DistContext,
)

from ..conftest import IdentityWorld
from .builders import (
    TRAIN_LABELS,
    VAL,
    TwoRanks,
    built_trainer,
    file_config,
    memory_bundle,
    memory_config,
    memory_trainer,
    tensors_equal,
)

CPU = torch.device("cpu")


def test_the_device_is_asked_for_by_name_with_or_without_a_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a world the configured device goes to ``init_distributed``; with one, to ``select_device``."""
    asked: list[tuple[str, str]] = []
    select = trainer_module.select_device

    def init(name: str) -> tuple[DistContext, torch.device]:
        asked.append(("init", name))
        return DistContext(), torch.device("cpu")

    monkeypatch.setattr(trainer_module, "init_distributed", init)
    monkeypatch.setattr(trainer_module, "select_device", lambda name: asked.append(("select", name)) or select(name))
    assert built_trainer(memory_config(tmp_path / "a", device="cpu")).device == torch.device("cpu")
    world = IdentityWorld(rank=0, world_size=1)
    assert built_trainer(memory_config(tmp_path / "b", device="cpu"), dist=world).dist is world
    assert asked == [("init", "cpu"), ("select", "cpu")]


def test_an_objective_passed_in_is_the_one_trained(tmp_path: Path) -> None:
    """``task=`` replaces the configured objective; without it the cross-entropy has the configured smoothing."""
    mine = ClassificationTask(torch.nn.CrossEntropyLoss())
    assert built_trainer(memory_config(tmp_path / "a"), task=mine).task is mine
    default = built_trainer(memory_config(tmp_path / "b", label_smoothing=0.3)).task
    assert type(default) is ClassificationTask and default.criterion.label_smoothing == 0.3


def test_construction_loads_the_configured_data_and_seeds_the_weights_and_the_data_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, bundle = [], memory_bundle(TRAIN_LABELS, VAL)
    monkeypatch.setattr(trainer_module, "load_dataset", lambda spec, **kw: loaded.append((spec, kw)) or bundle)
    cfg = memory_config(tmp_path / "run", data="fashion-mnist:/nowhere", data_root="/roots", image_size=28,
                        check_images=False, cache_images=True, seed=3)  # fmt: skip
    trainer = Trainer(cfg)
    trainer.log.close()
    assert loaded == [
        ("fashion-mnist:/nowhere", dict(data_root="/roots", image_size=28, check_images=False, cache=True))
    ]
    args = dict(trainer.model_args)
    torch.manual_seed(3)
    fresh = build_model(args.pop("name"), **args)
    assert tensors_equal(fresh.state_dict(), trainer.model.state_dict())  # drawn right after seeding
    assert trainer.generator.initial_seed() == 3 and torch.equal(
        trainer.generator.get_state(), torch.Generator().manual_seed(3).get_state()
    )
    assert trainer.callbacks == []  # PlotCurves is the CLI's to pass (visionlab.report)
    assert (trainer.best_robust_top1, trainer.last_robust_top1, trainer.best_ema) == (0.0, None, None)
    assert (trainer.start_epoch, trainer.step, trainer.best_top1, trainer.full_resume) == (0, 0, 0.0, False)
    assert trainer.resume_path is None and trainer.train_model is trainer.model and trainer._backbone_frozen is None
    mine: list[Callback] = []
    kept = Trainer(memory_config(tmp_path / "other"), bundle=bundle, callbacks=mine).callbacks
    assert kept == [] and kept is not mine  # a copy, and empty is not the default


def test_deterministic_algorithms_only_when_asked_and_the_autotuner_only_when_not(tmp_path: Path) -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    benchmark, bundle = torch.backends.cudnn.benchmark, memory_bundle(TRAIN_LABELS, VAL)
    try:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
        Trainer(memory_config(tmp_path / "a", deterministic=False), bundle=bundle, callbacks=[]).log.close()
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        Trainer(memory_config(tmp_path / "b", deterministic=True), bundle=bundle, callbacks=[]).log.close()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = benchmark


def test_the_stored_architecture_is_the_whole_one(tmp_path: Path) -> None:
    """model_args: the bundle's shape and statistics, the convolution, and the per-size defaults with overrides."""
    trainer = built_trainer(
        memory_config(tmp_path / "run", model="improved", conv="custom", model_kwargs={"depths": [1, 2, 1]})
    )
    assert trainer.model_args == dict(
        name="improved", num_classes=10, in_channels=1, image_size=28, mean=[0.5], std=[0.25], conv="custom",
        **architecture_kwargs("improved", 28, depths=[1, 2, 1]),
    )  # fmt: skip
    assert trainer.model_args["widths"] == (32, 64, 128)  # the 28-px defaults, not the large-image ones


def test_checkpoint_stores_the_whole_architecture(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ViT checkpoint keeps the per-size defaults it was built with, so editing them later cannot break it."""
    from visionlab.models.vit import VIT_CONFIGS

    small = dict(embed_dim=32, depth=2, num_heads=2, window_block_indexes=(0,))
    first = Trainer(file_config(tiny_fmnist, tmp_path / "a", epochs=1, model="vit", optimizer="adamw", lr=1e-3,
                                model_kwargs=small, limit_train=64, limit_val=32))  # fmt: skip
    first.fit()
    stored = load_checkpoint(tmp_path / "a" / BEST)["model_args"]
    assert stored["patch_size"] == 4 and stored["stem_channels"] == VIT_CONFIGS[28]["stem_channels"]  # defaults
    assert stored["embed_dim"] == 32 and stored["depth"] == 2  # overrides win
    monkeypatch.setitem(VIT_CONFIGS, 28, dict(patch_size=7, embed_dim=64, depth=1, num_heads=1))
    again = Trainer(file_config(tiny_fmnist, tmp_path / "b", epochs=1, model="vit"), resume=tmp_path / "a" / BEST)
    assert again.model.net.patch_size == 4 and len(again.model.net.blocks) == 2
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_label_smoothing_tta_and_adamw_wd_groups(tiny_fmnist: str, tmp_path: Path) -> None:
    cfg = file_config(tiny_fmnist, tmp_path / "r", epochs=1, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                      wd_exclude_norm_bias=True, label_smoothing=0.1, tta=True)  # fmt: skip
    trainer = Trainer(cfg)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert trainer.task.criterion.label_smoothing == 0.1
    assert trainer.fit()["val_top1"] >= 0.0


def test_schedule_and_scaler_are_sized_from_the_loader(tmp_path: Path) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)
    trainer = memory_trainer(tmp_path / "a", bundle, epochs=3, warmup=0.5, limit_train=80, limit_val=7)
    assert (len(trainer.train_loader.dataset), len(trainer.val_loader.dataset)) == (80, 7)
    assert len(trainer.train_loader) == 5  # 80 images, batches of 16
    assert (trainer.scheduler.warmup_steps, trainer.scheduler.total_steps) == (2, 15)  # round(0.5 * 5), 3 * 5
    assert trainer.val_loader.batch_size == trainer.train_loader.batch_sampler.batch_size == 16
    assert not trainer.scaler.is_enabled()  # no loss scaling on a CPU, even with amp
    assert not memory_trainer(tmp_path / "b", bundle, amp=True).scaler.is_enabled()


def test_the_training_loader_draws_from_the_trainers_generator(tmp_path: Path) -> None:
    """The data order is the trainer's generator's (checkpointed for exact resume), not a fresh one's."""
    trainer = built_trainer(memory_config(tmp_path / "run"))
    assert trainer.train_loader.generator is trainer.generator
    assert trainer.train_loader.batch_sampler.generator is trainer.generator


def test_batch_augmentation_goes_on_a_copy_of_an_in_memory_training_set(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(memory_config(tmp_path / "run", data=tiny_fmnist, augment="flip,crop=2,erase=0.5"), callbacks=[])
    trainer.log.close()
    augmented, original = trainer.train_loader.dataset, trainer.bundle.train
    assert augmented is not original and augmented.batch_augment == parse_augment("flip,crop=2,erase=0.5")
    assert original.batch_augment != augmented.batch_augment  # the bundle keeps its own
    assert torch.equal(augmented.images, original.images)
    plain = Trainer(memory_config(tmp_path / "plain", data=tiny_fmnist), callbacks=[])
    plain.log.close()
    assert plain.train_loader.dataset is plain.bundle.train
    with pytest.raises(ConfigError) as info:
        Trainer(
            memory_config(tmp_path / "files", augment="flip"), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]
        )
    assert str(info.value) == (
        "augment: applies to datasets held in memory (fashion-mnist, cifar10), not fashion-mnist: its files are "
        "augmented by the MiniPlaces recipe"
    )


def test_batch_norm_stays_plain_without_sync_bn_in_a_world_of_two(tmp_path: Path) -> None:
    world = TwoRanks(rank=0, world_size=2)
    trainer = Trainer(memory_config(tmp_path / "run", model="improved"), bundle=memory_bundle(TRAIN_LABELS, VAL),
                      callbacks=[], dist=world)  # fmt: skip
    trainer.log.close()
    kinds = {type(m) for m in trainer.model.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.SyncBatchNorm not in kinds


def test_channels_last_puts_the_model_in_that_layout(tmp_path: Path) -> None:
    trainer = Trainer(
        memory_config(tmp_path / "run", channels_last=True), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]
    )
    trainer.log.close()
    convs = [p for p in trainer.model.parameters() if p.ndim == 4 and min(p.shape[1:]) > 1]  # else both layouts
    assert convs
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)


def test_the_training_step_runs_ddp_on_the_trainers_device_then_the_asked_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapped, compiled = [], []

    class Wrapping(TwoRanks):
        def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
            wrapped.append((model, device))
            return model

    monkeypatch.setattr(torch, "compile", lambda model, backend: compiled.append((model, backend)) or "compiled")
    trainer = Trainer(memory_config(tmp_path / "run", compile="aot_eager"), bundle=memory_bundle(TRAIN_LABELS, VAL),
                      callbacks=[], dist=Wrapping(rank=0, world_size=2))  # fmt: skip
    trainer.log.close()
    assert wrapped == [(trainer.model, torch.device("cpu"))] and compiled == [(trainer.model, "aot_eager")]
    assert trainer.train_model == "compiled"


def test_model_errors_name_the_checkpoint_or_the_model_kwargs(tmp_path: Path) -> None:
    bundle, run = memory_bundle(TRAIN_LABELS, VAL), tmp_path / "run"
    Trainer(memory_config(run), bundle=bundle, callbacks=[]).fit()
    state = load_checkpoint(run / BEST)
    state["model_args"]["widt"] = [8]
    save_checkpoint(state, tmp_path / "bad" / BEST)
    args = dict(state["model_args"])
    with pytest.raises(TypeError) as refused:
        build_model(args.pop("name"), **args)
    with pytest.raises(CheckpointError) as info:
        Trainer(memory_config(tmp_path / "a"), bundle=bundle, callbacks=[], resume=tmp_path / "bad" / BEST)
    assert str(info.value) == f"{tmp_path / 'bad' / BEST}: its model cannot be rebuilt ({refused.value})"
    with pytest.raises(ConfigError) as info:
        Trainer(memory_config(tmp_path / "b", model_kwargs={"widt": [8]}), bundle=bundle, callbacks=[])
    assert str(info.value) == f"model_kwargs: simplenet: {refused.value}"
    with pytest.raises(ConfigError) as info:
        Trainer(memory_config(tmp_path / "c", model="improved", sync_bn=True), bundle=bundle, callbacks=[])
    assert str(info.value) == (
        "sync_bn: needs CUDA devices: PyTorch's SyncBatchNorm runs on GPUs only (here: cpu); on the CPU each process "
        "normalizes with the statistics of its own share of the batch"
    )


def test_a_robust_monitor_only_when_training_adversarially_or_selecting_by_robustness(tmp_path: Path) -> None:
    from visionlab.robustness import RobustMonitor

    bundle = memory_bundle(TRAIN_LABELS, VAL)
    assert memory_trainer(tmp_path / "a", bundle).monitor is None
    monitor = memory_trainer(tmp_path / "b", bundle, select_by="robust", robust_val=5, adv_eps=0.2).monitor
    assert isinstance(monitor, RobustMonitor)
    assert (monitor.eps, monitor.n, monitor.batch_size, len(monitor.loader.dataset)) == (0.2, 5, 16, 5)
    assert isinstance(memory_trainer(tmp_path / "c", bundle, adv_train="fgsm-rs").monitor, RobustMonitor)


def test_the_robust_monitor_attacks_within_the_limited_validation_set(tmp_path: Path) -> None:
    """``limit_val`` bounds the monitor's images too: 3 of them, though ``robust_val`` asks for 5."""
    monitor = built_trainer(memory_config(tmp_path / "run", select_by="robust", robust_val=5, limit_val=3)).monitor
    assert (len(monitor.val), monitor.n, len(monitor.loader.dataset)) == (3, 5, 3)


def test_the_monitor_runs_on_the_trainers_device_and_world(tmp_path: Path) -> None:
    trainer = Trainer(memory_config(tmp_path / "run", select_by="robust", robust_val=4),
                      bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[])  # fmt: skip
    trainer.log.close()
    assert trainer.monitor.device == trainer.device and trainer.monitor.dist is trainer.dist


@pytest.mark.parametrize(("native", "warned"), [(False, True), (True, False), (None, False)])
def test_amp_on_a_cpu_without_bf16_warns(tiny_fmnist, tmp_path, monkeypatch, capsys, native, warned) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    cfg = TrainConfig(data=tiny_fmnist, out=str(tmp_path / "r"), epochs=1, batch_size=32, workers=0, amp=True,
                      device="cpu", quiet=True, progress=False, tensorboard=False)  # fmt: skip
    Trainer(cfg, callbacks=[])
    assert ("no native bfloat16" in capsys.readouterr().err) is warned  # a warning, printed even when quiet


@pytest.mark.parametrize(("amp", "native"), [(False, False), (True, None), (True, True)])
def test_no_amp_warning_without_amp_or_on_a_cpu_with_bf16_or_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], amp: bool, native: bool | None
) -> None:
    """The warning needs all three: amp asked, a CPU device, and flags known to lack native bf16."""
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    built_trainer(memory_config(tmp_path / "run", amp=amp))
    assert capsys.readouterr().err == ""


def test_amp_on_a_cpu_without_bf16_prints_the_whole_warning_even_when_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    Trainer(
        memory_config(tmp_path / "run", amp=True, quiet=True), bundle=memory_bundle(TRAIN_LABELS, VAL), callbacks=[]
    ).log.close()
    assert capsys.readouterr().err == f"[visionlab] WARNING: {trainer_module.AMP_CPU_WARNING}\n"


def test_fewer_training_images_than_processes_is_one_line_naming_the_flag(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(trainer_module, "init_distributed", lambda device: (IdentityWorld(0, 2), CPU))
    argv = ["train", "--data", tiny_fmnist, "--limit-train", "1", "--epochs", "1", "--out", str(tmp_path / "run"),
            "--no-tensorboard", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 2
    assert capsys.readouterr().err == (
        "visionlab: error: --limit-train: 1 training image for 2 processes: distributed training needs at least 2 "
        "(one per process)\n"
    )
