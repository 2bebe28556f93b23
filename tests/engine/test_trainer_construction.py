"""The Trainer's construction stages pinned to values (found by mutation testing, docs/TESTING.md): the device
each way of building asks for, the objective passed in, the amp warning's three conditions, the stored
architecture, pretrained weights (statistics, the line said, the backbone copied), the loaders' generator, the
robust monitor's share of a limited validation set, what an exact resume restores, the head's parameter groups,
and the wrappers (DDP, ``torch.compile``) rebuilt only when the frozen backbone changes under several ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from visionlab.engine import CHECKPOINT, TrainConfig, Trainer, load_checkpoint
from visionlab.engine import trainer as trainer_module
from visionlab.engine.checkpoint import save_checkpoint
from visionlab.engine.optim import param_groups
from visionlab.engine.task import ClassificationTask
from visionlab.models import architecture_kwargs, build_model, load_weights
from visionlab.models.finetune import split_head
from visionlab.runtime.distributed import DistContext

from ..conftest import IdentityWorld
from .test_trainer_values import TRAIN_LABELS, _bundle

VAL = list(range(10)) * 2


def _cfg(out: Path, **kw: Any) -> TrainConfig:
    base = dict(data="fashion-mnist", out=str(out), epochs=1, batch_size=16, lr=0.05, warmup=0.5, workers=0,
                progress=False, tensorboard=False, print_freq=2, seed=7)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _built(cfg: TrainConfig, **kw: Any) -> Trainer:
    trainer = Trainer(cfg, bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[], **kw)
    trainer.log.close()
    return trainer


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
    assert _built(_cfg(tmp_path / "a", device="cpu")).device == torch.device("cpu")
    world = IdentityWorld(rank=0, world_size=1)
    assert _built(_cfg(tmp_path / "b", device="cpu"), dist=world).dist is world
    assert asked == [("init", "cpu"), ("select", "cpu")]


def test_an_objective_passed_in_is_the_one_trained(tmp_path: Path) -> None:
    """``task=`` replaces the configured objective; without it the cross-entropy has the configured smoothing."""
    mine = ClassificationTask(torch.nn.CrossEntropyLoss())
    assert _built(_cfg(tmp_path / "a"), task=mine).task is mine
    default = _built(_cfg(tmp_path / "b", label_smoothing=0.3)).task
    assert type(default) is ClassificationTask and default.criterion.label_smoothing == 0.3


@pytest.mark.parametrize(("amp", "native"), [(False, False), (True, None), (True, True)])
def test_no_amp_warning_without_amp_or_on_a_cpu_with_bf16_or_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], amp: bool, native: bool | None
) -> None:
    """The warning needs all three: amp asked, a CPU device, and flags known to lack native bf16."""
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    _built(_cfg(tmp_path / "run", amp=amp))
    assert capsys.readouterr().err == ""


def test_the_stored_architecture_is_the_whole_one(tmp_path: Path) -> None:
    """model_args: the bundle's shape and statistics, the convolution, and the per-size defaults with overrides."""
    trainer = _built(_cfg(tmp_path / "run", model="improved", conv="custom", model_kwargs={"depths": [1, 2, 1]}))
    assert trainer.model_args == dict(
        name="improved", num_classes=10, in_channels=1, image_size=28, mean=[0.5], std=[0.25], conv="custom",
        **architecture_kwargs("improved", 28, depths=[1, 2, 1]),
    )  # fmt: skip
    assert trainer.model_args["widths"] == (32, 64, 128)  # the 28-px defaults, not the large-image ones


def test_pretrained_weights_bring_their_statistics_and_backbone_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A visionlab checkpoint as ``pretrained``: its mean/std are stored, its backbone copied, one line said."""
    args = dict(num_classes=3, in_channels=1, image_size=28, mean=[0.25], std=[0.5])
    torch.manual_seed(11)
    source = build_model("simplenet", **args)
    path = tmp_path / "weights.pth.tar"
    save_checkpoint({"model": source.state_dict(), "model_args": {"name": "simplenet", **args}}, path)
    trainer = _built(_cfg(tmp_path / "run", pretrained=str(path)))
    assert (trainer.pretrained.path, trainer.pretrained.kind) == (path, "visionlab checkpoint")
    assert (trainer.model_args["mean"], trainer.model_args["std"]) == ([0.25], [0.5])
    fresh = build_model("simplenet", num_classes=10, in_channels=1, image_size=28, mean=[0.25], std=[0.5])
    said = load_weights(str(path), "simplenet").apply(fresh)
    assert capsys.readouterr().err == f"[visionlab] pretrained weights: {said}\n"
    head = split_head(trainer.model)[1]
    head_ids = {id(p) for _, p in head}
    ours = {n: p for n, p in trainer.model.named_parameters() if id(p) not in head_ids}
    theirs = dict(source.named_parameters())
    assert ours and all(torch.equal(p, theirs[n]) for n, p in ours.items())


def test_the_training_loader_draws_from_the_trainers_generator(tmp_path: Path) -> None:
    """The data order is the trainer's generator's (checkpointed for exact resume), not a fresh one's."""
    trainer = _built(_cfg(tmp_path / "run"))
    assert trainer.train_loader.generator is trainer.generator
    assert trainer.train_loader.batch_sampler.generator is trainer.generator


def test_the_robust_monitor_attacks_within_the_limited_validation_set(tmp_path: Path) -> None:
    """``limit_val`` bounds the monitor's images too: 3 of them, though ``robust_val`` asks for 5."""
    monitor = _built(_cfg(tmp_path / "run", select_by="robust", robust_val=5, limit_val=3)).monitor
    assert (len(monitor.val), monitor.n, len(monitor.loader.dataset)) == (3, 5, 3)


def test_an_exact_resume_restores_the_optimizer_schedule_and_average(tmp_path: Path) -> None:
    """The checkpoint's momentum buffers, schedule position, weight EMA and its best accuracy come back as saved."""
    run = tmp_path / "run"
    Trainer(_cfg(run, ema=0.9), bundle=_bundle(TRAIN_LABELS, VAL), callbacks=[]).fit()
    state = load_checkpoint(run / CHECKPOINT)
    resumed = _built(_cfg(run, ema=0.9), resume=run / CHECKPOINT)
    saved, now = state["optimizer"]["state"], resumed.optimizer.state_dict()["state"]
    assert saved and list(now) == list(saved)
    assert all(torch.equal(now[k]["momentum_buffer"], saved[k]["momentum_buffer"]) for k in saved)
    assert resumed.scheduler.state_dict() == state["scheduler"] and resumed.scheduler.last_epoch == 6
    ema = resumed.ema.state_dict()
    assert ema["updates"] == state["ema"]["updates"] == 6
    assert all(torch.equal(v, state["ema"]["model"][k]) for k, v in ema["model"].items())
    assert resumed.best_ema == state["best_ema"] and isinstance(state["best_ema"], float)


def test_the_head_gets_its_own_lr_groups_after_the_backbones(tmp_path: Path) -> None:
    """head_lr_mult: backbone (decay, no decay) at lr, then the head's (decay, no decay) at lr x mult."""
    model = build_model("improved", num_classes=10, in_channels=1, image_size=28)
    names = {id(p): n for n, p in model.named_parameters()}
    cfg = TrainConfig(model="improved", lr=0.02, head_lr_mult=4.0, weight_decay=1e-3, wd_exclude_norm_bias=True)
    groups = param_groups(model, cfg)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.02, 1e-3), (0.02, 0.0), (0.08, 1e-3), (0.08, 0.0)]
    assert [names[id(p)] for p in groups[2]["params"]] == ["net.fc.weight"]
    assert [names[id(p)] for p in groups[3]["params"]] == ["net.fc.bias"]
    backbone = [names[id(p)] for g in groups[:2] for p in g["params"]]
    assert sorted(backbone) == sorted(n for n in names.values() if not n.startswith("net.fc."))
    plain = param_groups(model, TrainConfig(model="improved", lr=0.02, head_lr_mult=1.0, weight_decay=1e-3))
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in plain] == [(0.02, 1e-3, len(names))]


class Wrapping(IdentityWorld):
    """A world of two whose ``wrap`` records what required grad and returns a new marker each time."""

    wraps: ClassVar[list[list[str]]] = []

    def wrap(self, model: torch.nn.Module, device: torch.device) -> Any:
        self.wraps.append([n for n, p in model.named_parameters() if p.requires_grad])
        return ("ddp", len(self.wraps))


def test_ddp_is_rebuilt_only_when_the_backbone_changes_and_only_under_several_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several ranks: one wrapper at construction (head only), a new one when unfreezing; one rank with
    ``compile``: compiled once, never again when unfreezing (a world of one buckets nothing)."""
    Wrapping.wraps = []
    cfg = _cfg(tmp_path / "a", model="improved", epochs=3, freeze_backbone=True, unfreeze_at=1)
    trainer = _built(cfg, dist=Wrapping(rank=0, world_size=2))
    assert Wrapping.wraps == [["net.fc.weight", "net.fc.bias"]] and trainer.train_model == ("ddp", 1)
    trainer._freeze_for_epoch(1)
    assert Wrapping.wraps[1] == [n for n, _ in trainer.model.named_parameters()] and len(Wrapping.wraps) == 2
    assert trainer.train_model == ("ddp", 2)

    compiled: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda model, backend: compiled.append(backend) or "compiled")
    one = _built(_cfg(tmp_path / "b", model="improved", epochs=3, freeze_backbone=True, unfreeze_at=1,
                      compile="aot_eager"))  # fmt: skip
    one._freeze_for_epoch(1)
    assert compiled == ["aot_eager"] and one.train_model == "compiled"
