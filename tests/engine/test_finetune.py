"""Fine-tuning in the trainer: pretrained weights (their statistics and backbone copied, the line said), a frozen
backbone, freezing and unfreezing by the epoch alone, DDP rebuilt only when the backbone changes, and exact resume
through all of them (the head's parameter groups are pinned in test_optim.py). ``improved`` (batch norm, cheap at
28 px) stands in for any registry model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from visionlab.cli import main
from visionlab.engine import (
    BEST,
    CHECKPOINT,
    Callback,
    TrainConfig,
    Trainer,
    load_checkpoint,
    model_from_checkpoint,
)
from visionlab.engine import trainer as trainer_module
from visionlab.engine.checkpoint import save_checkpoint
from visionlab.errors import ConfigError
from visionlab.models import build_model, load_weights
from visionlab.models.finetune import split_head

from ..conftest import IdentityWorld, Stop, StopAt
from .builders import (
    TRAIN_LABELS,
    VAL,
    built_trainer,
    memory_bundle,
    memory_config,
    memory_trainer,
)


def _cfg(data: str, out: Path, **kw: Any) -> TrainConfig:
    base = dict(data=data, out=str(out), model="improved", epochs=1, batch_size=16, lr=0.05, warmup=0.5, workers=0,
                progress=False, tensorboard=False, print_freq=2, seed=5, weight_decay=5e-4)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every backbone tensor (parameters and batch-norm buffers), cloned."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("net.fc.")}


class Snapshots(Callback):
    """The backbone after every epoch, and whether its batch norms trained."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.states.append(_backbone(trainer.model))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_a_frozen_backbone_does_not_move_and_its_batch_norms_stay_in_eval(tiny_fmnist: str, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", freeze_backbone=True), callbacks=[])
    before, head = _backbone(trainer.model), trainer.model.net.fc.weight.detach().clone()
    trainer.model.train()
    assert all(not m.training for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    trainer.fit()
    assert _same(before, _backbone(trainer.model))  # weights, running statistics, num_batches_tracked: bit-equal
    assert not torch.equal(head, trainer.model.net.fc.weight)  # the head trained (with weight decay and momentum)


def test_the_backbone_unfreezes_at_the_epoch_given(
    tiny_fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots = Snapshots()
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=3, freeze_backbone=True, unfreeze_at=2),
                      callbacks=[snapshots])  # fmt: skip
    start = _backbone(trainer.model)
    trainer.fit()
    after0, after1, after2 = snapshots.states
    assert _same(start, after0) and _same(start, after1)  # epochs 0 and 1: frozen
    assert not _same(after1, after2)  # epoch 2 trains everything
    assert all(p.requires_grad for p in trainer.model.parameters())
    assert "epoch 3: backbone unfrozen" in capsys.readouterr().err


class RecordingWorld(IdentityWorld):
    """A world of two without a process group: collectives are identities, and ``wrap`` records which parameters
    required grad each time DDP would have been built."""

    wraps: ClassVar[list[list[str]]] = []

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        self.wraps.append([n for n, p in model.named_parameters() if p.requires_grad])
        return model


def test_ddp_is_built_once_at_the_start_with_the_backbone_already_frozen(tiny_fmnist: str, tmp_path: Path) -> None:
    RecordingWorld.wraps = []
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run", epochs=3, freeze_backbone=True, unfreeze_at=2),
                      callbacks=[], dist=RecordingWorld(rank=0, world_size=2))  # fmt: skip
    head = [n for n, _ in trainer.model.named_parameters() if n.startswith("net.fc.")]
    assert RecordingWorld.wraps == [head]  # one wrapper, bucketing the head alone
    trainer._freeze_for_epoch(1)
    assert len(RecordingWorld.wraps) == 1  # still frozen: no new wrapper
    trainer._freeze_for_epoch(2)
    assert RecordingWorld.wraps[1] == [n for n, _ in trainer.model.named_parameters()]  # unfrozen: rebuilt on all


@pytest.mark.parametrize("crash_at", [10, 16], ids=["killed-while-frozen", "killed-after-unfreezing"])
def test_exact_resume_through_freezing_and_unfreezing(tiny_fmnist: str, tmp_path: Path, crash_at: int) -> None:
    """96 images / 16 = 6 steps per epoch; the backbone unfreezes at epoch 2 (step 12)."""
    kw = dict(epochs=3, freeze_backbone=True, unfreeze_at=2, head_lr_mult=5.0, optimizer="adamw", lr=3e-3)
    ref = Trainer(_cfg(tiny_fmnist, tmp_path / "ref", **kw), callbacks=[])
    ref.fit()
    with pytest.raises(Stop):
        Trainer(_cfg(tiny_fmnist, tmp_path / "run", **kw), task=StopAt(crash_at), callbacks=[]).fit()
    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **kw), resume=tmp_path / "run" / CHECKPOINT, callbacks=[])
    assert resumed.start_epoch == crash_at // 6
    resumed.fit()
    for (name, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_fine_tuning_from_a_checkpoint_then_rebuilding_without_the_weights_file(
    tiny_fmnist: str, tmp_path: Path
) -> None:
    source = Trainer(_cfg(tiny_fmnist, tmp_path / "source"), callbacks=[])
    source.fit()
    weights = tmp_path / "weights.pth.tar"
    (tmp_path / "source" / CHECKPOINT).rename(weights)

    tuned = Trainer(_cfg(tiny_fmnist, tmp_path / "tuned", pretrained=str(weights), epochs=2), callbacks=[])
    assert _same(_backbone(source.model), _backbone(tuned.model))  # started from the source's backbone
    assert tuned.model_args["mean"] == source.model_args["mean"]  # the statistics the weights were trained with
    assert "pretrained" not in tuned.model_args  # the checkpoint stores the architecture, not the weights' source
    with pytest.raises(Stop):
        Trainer(_cfg(tiny_fmnist, tmp_path / "tuned", pretrained=str(weights), epochs=2), task=StopAt(8),
                callbacks=[]).fit()  # fmt: skip
    weights.unlink()  # the pretrained file is gone: the fine-tuned run still rebuilds and resumes

    state = load_checkpoint(tmp_path / "tuned" / BEST)
    assert state["config"]["pretrained"] == str(weights)
    model = model_from_checkpoint(state)
    assert _same(_backbone(model), {k: v for k, v in state["model"].items() if not k.startswith("net.fc.")})
    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "tuned", pretrained=str(weights), epochs=2),
                      resume=tmp_path / "tuned" / CHECKPOINT, callbacks=[])  # fmt: skip
    assert resumed.full_resume and resumed.pretrained is None
    resumed.fit()

    with pytest.raises(ConfigError, match="pretrained weights or a checkpoint to fine-tune from, not both") as info:
        Trainer(_cfg(tiny_fmnist, tmp_path / "x", pretrained="w.pth"), resume=tmp_path / "tuned" / BEST)
    assert info.value.field == "pretrained"


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0].removeprefix("visionlab: error: ")


def test_cli_weights_errors_are_one_line_before_any_data_is_read(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_data(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("data was read before the weights were checked")

    monkeypatch.setattr(trainer_module, "load_dataset", no_data)
    train = ["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    assert main([*train, "--model", "resnet18", "--pretrained", "imagenet"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("ImageNet weights for resnet18 not found: put resnet18-f37072fd.pth")
    assert str(hub_cache / "resnet18-f37072fd.pth") in line

    assert main([*train, "--model", "resnet18", "--pretrained", str(tmp_path / "none.pth")]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"{tmp_path / 'none.pth'}: pretrained weights file not found"
    assert main([*train, "--pretrained", "imagenet"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(
        "--pretrained: ImageNet weights exist for resnet18, not 'simplenet'"
    )
    assert main([*train, "--unfreeze-at", "2"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("--unfreeze-at: needs freeze_backbone")
    assert main([*train, "--head-lr-mult", "0"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "--head-lr-mult: must be a number > 0, got 0.0"
    assert not (tmp_path / "run").exists()


def test_pretrained_weights_bring_their_statistics_and_backbone_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A visionlab checkpoint as ``pretrained``: its mean/std are stored, its backbone copied, one line said."""
    args = dict(num_classes=3, in_channels=1, image_size=28, mean=[0.25], std=[0.5])
    torch.manual_seed(11)
    source = build_model("simplenet", **args)
    path = tmp_path / "weights.pth.tar"
    save_checkpoint({"model": source.state_dict(), "model_args": {"name": "simplenet", **args}}, path)
    trainer = built_trainer(memory_config(tmp_path / "run", pretrained=str(path)))
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


# --start-epoch fast-forwards the schedule before any optimizer step, on purpose.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_the_backbone_freezes_and_unfreezes_by_the_epoch_alone(tmp_path: Path, capsys) -> None:
    bundle = memory_bundle(TRAIN_LABELS, VAL)

    def backbone_trains(trainer: Trainer) -> bool:
        backbone, head = split_head(trainer.model)
        assert all(p.requires_grad for _, p in head)
        trains = {p.requires_grad for _, p in backbone}
        assert len(trains) == 1
        return trains.pop()

    trainer = memory_trainer(tmp_path / "a", bundle, model="improved", freeze_backbone=True, unfreeze_at=2)
    trainer.log.close()
    assert capsys.readouterr().err == ""  # frozen from the start: nothing to say
    assert not backbone_trains(trainer)
    trainer._freeze_for_epoch(1)
    assert not backbone_trains(trainer) and capsys.readouterr().err == ""
    trainer._freeze_for_epoch(2)
    assert backbone_trains(trainer)
    assert capsys.readouterr().err == "[visionlab] epoch 3: backbone unfrozen\n"
    trainer._freeze_for_epoch(1)
    assert not backbone_trains(trainer)
    assert capsys.readouterr().err == "[visionlab] epoch 2: backbone frozen\n"

    late = memory_trainer(tmp_path / "b", bundle, model="improved", freeze_backbone=True, unfreeze_at=2, start_epoch=2)
    late.log.close()
    assert backbone_trains(late)
    assert capsys.readouterr().err == "[visionlab] epoch 3: backbone unfrozen\n"  # trained from its first epoch

    always = memory_trainer(tmp_path / "c", bundle, model="improved", freeze_backbone=True)
    always.log.close()
    always._freeze_for_epoch(50)
    assert not backbone_trains(always)
    plain = memory_trainer(tmp_path / "d", bundle, model="improved")
    plain.log.close()
    assert all(p.requires_grad for p in plain.model.parameters())


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
    cfg = memory_config(tmp_path / "a", model="improved", epochs=3, freeze_backbone=True, unfreeze_at=1)
    trainer = built_trainer(cfg, dist=Wrapping(rank=0, world_size=2))
    assert Wrapping.wraps == [["net.fc.weight", "net.fc.bias"]] and trainer.train_model == ("ddp", 1)
    trainer._freeze_for_epoch(1)
    assert Wrapping.wraps[1] == [n for n, _ in trainer.model.named_parameters()] and len(Wrapping.wraps) == 2
    assert trainer.train_model == ("ddp", 2)

    compiled: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda model, backend: compiled.append(backend) or "compiled")
    one = built_trainer(memory_config(tmp_path / "b", model="improved", epochs=3, freeze_backbone=True, unfreeze_at=1,
                                      compile="aot_eager"))  # fmt: skip
    one._freeze_for_epoch(1)
    assert compiled == ["aot_eager"] and one.train_model == "compiled"
