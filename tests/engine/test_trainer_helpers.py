"""The trainer's small public helpers, each against values written out by hand: the divergence advice, device
selection, autocast, the optimizer's weight-decay groups, the loaders, evaluation's mode and memory format, and
rebuilding a model from a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from visionlab.engine import (
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    build_optimizer,
    evaluate,
    limit,
    make_loader,
    model_from_checkpoint,
    select_device,
)
from visionlab.runtime import autocast
from visionlab.runtime.distributed import ShardedBatchSampler

CPU = torch.device("cpu")


def test_divergence_advice_names_the_fields_or_the_callers_names_for_them() -> None:
    err = TrainingDiverged("loss is nan at epoch 2, step 7")
    assert str(err) == "loss is nan at epoch 2, step 7. Lower lr, raise warmup or keep clip_grad above 0."
    assert err.detail == "loss is nan at epoch 2, step 7"
    flags = {"lr": "--lr", "warmup": "--warmup", "clip_grad": "--clip-grad"}
    assert err.advice(flags) == "Lower --lr, raise --warmup or keep --clip-grad above 0."
    assert err.advice({"lr": "--lr"}) == "Lower --lr, raise warmup or keep clip_grad above 0."


def test_auto_device_is_cuda_exactly_when_cuda_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == select_device("auto") == CPU
    assert select_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("auto") == torch.device("cuda")
    assert select_device("cuda") == torch.device("cuda")  # no index: device 0, which exists
    with pytest.raises(Exception, match=r"^device: 'cuda:1' requested but CUDA has devices cuda:0 to cuda:0$"):
        select_device("cuda:1")


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # the CUDA context is only built, not entered
def test_autocast_is_bfloat16_on_the_cpu_and_off_unless_asked() -> None:
    a, b = torch.ones(2, 2), torch.ones(2, 2)
    with autocast(CPU, True):
        assert torch.mm(a, b).dtype == torch.bfloat16
    with autocast(CPU, False):
        assert torch.mm(a, b).dtype == torch.float32
    cuda = autocast(torch.device("cuda"), True)
    assert (cuda.device, cuda.fast_dtype) == ("cuda", torch.float16)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)  # weight 4-d (decayed), bias 1-d
        self.fc = nn.Linear(2, 2, bias=False)  # weight 2-d (decayed)
        self.norm = nn.LayerNorm(2)  # 1-d weight and bias
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 2))  # 3-d, but a position embedding
        self.frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_weight_decay_groups_leave_out_biases_norms_and_position_embeddings() -> None:
    model = _Tiny()
    cfg = TrainConfig(optimizer="sgd", lr=0.3, momentum=0.8, weight_decay=0.01, wd_exclude_norm_bias=True)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD)
    decay, no_decay = opt.param_groups
    # frozen parameters stay in their group (no gradient, so no step): unfreezing mid-run keeps the groups
    assert _ids(decay["params"]) == {id(model.conv.weight), id(model.fc.weight), id(model.frozen)}
    assert _ids(no_decay["params"]) == _ids([model.conv.bias, model.norm.weight, model.norm.bias, model.pos_embed])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    assert (decay["lr"], decay["momentum"]) == (0.3, 0.8)

    (everything,) = build_optimizer(model, TrainConfig(weight_decay=0.01)).param_groups  # one group, frozen in
    assert _ids(everything["params"]) == {id(p) for p in model.parameters()}
    assert everything["weight_decay"] == 0.01

    adamw = build_optimizer(model, TrainConfig(optimizer="adamw", lr=0.002, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.param_groups[0]["lr"], adamw.param_groups[0]["weight_decay"]) == (0.002, 0.05)
    cfg = TrainConfig(optimizer="adamw", weight_decay=0.05, wd_exclude_norm_bias=True)
    decay, no_decay = build_optimizer(model, cfg).param_groups  # AdamW's own default decay is 0.01, not 0
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    with pytest.raises(Exception, match=r"^optimizer: must be sgd or adamw, got 'adam'$"):
        build_optimizer(model, TrainConfig(optimizer="adam"))


def test_loaders_shuffle_and_drop_the_ragged_batch_only_for_training() -> None:
    data = TensorDataset(torch.arange(10.0), torch.arange(10))
    gen = torch.Generator()
    train = make_loader(data, 4, train=True, workers=0, device=CPU, generator=gen)
    sampler = train.batch_sampler
    assert isinstance(sampler, ShardedBatchSampler) and (sampler.batch_size, sampler.drop_last) == (4, True)
    assert (train.num_workers, train.pin_memory) == (0, False)
    assert train.generator is gen and sampler.generator is gen
    assert len(train) == 2  # 10 images, batches of 4: the ragged 2 dropped
    state = gen.get_state()
    replay = torch.Generator().set_state(state)
    torch.empty((), dtype=torch.int64).random_(generator=replay)  # the DataLoader's worker base seed comes first
    order = torch.randperm(10, generator=replay).tolist()
    assert [b[1].tolist() for b in train] == [order[:4], order[4:8]]  # then one permutation per epoch
    assert gen.get_state().equal(replay.get_state())  # and nothing else is drawn
    val = make_loader(data, 4, train=False, workers=0, device=CPU)
    assert not val.drop_last and isinstance(val.sampler, torch.utils.data.SequentialSampler) and len(val) == 3
    small = make_loader(data, 10, train=True, workers=0, device=CPU)
    assert not small.batch_sampler.drop_last and len(small) == 1  # one batch of everything is never dropped
    assert make_loader(data, 4, train=False, workers=0, device=torch.device("cuda")).pin_memory
    assert make_loader(data, 4, train=False, workers=2, device=CPU).num_workers == 2


def test_limit_takes_the_first_n_items() -> None:
    data = TensorDataset(torch.arange(5))
    assert limit(data, None) is data
    assert limit(data, 5) is data
    assert limit(data, 9) is data
    four = limit(data, 4)
    assert isinstance(four, Subset) and four.dataset is data and list(four.indices) == [0, 1, 2, 3]
    assert [int(four[i][0]) for i in range(4)] == [0, 1, 2, 3]


class _Recorder(nn.Module):
    """Logits from the first two pixels; records the mode and memory format of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, x.is_contiguous(memory_format=torch.channels_last)))
        return x.flatten(1)[:, :2]


def test_evaluate_restores_the_mode_and_feeds_the_asked_memory_format() -> None:
    images = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]], [[[0.0, 2.0], [0.0, 0.0]]]]).repeat(1, 2, 1, 1)
    loader = [(images, torch.tensor([0, 0]))]
    model = _Recorder()
    stats = evaluate(model, loader, CPU)
    assert model.training and model.seen == [(False, False)]  # evaluated in eval mode, train mode restored
    assert (stats["top1"], stats["n"]) == (50.0, 2)
    model.eval()
    evaluate(model, loader, CPU, channels_last=True)
    assert not model.training and model.seen[-1] == (False, True)


def test_model_from_checkpoint_rebuilds_and_wraps_bad_arguments(tmp_path: Path) -> None:
    from visionlab.models import build_model

    args = dict(name="simplenet", num_classes=3, in_channels=1, image_size=28)
    model = build_model(**{k: v for k, v in args.items() if k != "name"}, name="simplenet")
    state = {"model_args": args, "model": model.state_dict()}
    rebuilt = model_from_checkpoint(state, device="meta")
    assert next(rebuilt.parameters()).device.type == "meta"
    cpu = model_from_checkpoint(state)
    for a, b in zip(model.state_dict().values(), cpu.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert state["model_args"]["name"] == "simplenet"  # the stored arguments are not consumed
    bad = {"model_args": {**args, "num_classes": 4}, "model": model.state_dict()}
    with pytest.raises(
        CheckpointError, match=r"^the checkpoint's model cannot be rebuilt from its stored arguments \("
    ):
        model_from_checkpoint(bad)
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        model_from_checkpoint({"model_args": {**args, "name": "nonet"}, "model": {}})


def test_curves_are_drawn_after_the_last_epoch_and_at_most_every_interval_before(monkeypatch, tmp_path) -> None:
    """PlotCurves under a scripted clock: an epoch is drawn once `interval` seconds have passed since the last
    drawing, or since the first epoch began (its record's `seconds` before the first reading); the run's last epoch
    always is."""
    from visionlab.report import PlotCurves
    from visionlab.report import callbacks as callbacks_module

    drawn = []
    monkeypatch.setattr(callbacks_module, "plot_runs", lambda runs, out, labels: drawn.append((runs, out, labels)))
    now = [100.0]
    plot = PlotCurves(interval=10.0, clock=lambda: now[0])
    trainer = SimpleNamespace(cfg=SimpleNamespace(epochs=8), run_dir=tmp_path / "run")
    epochs: list[int] = []
    # (clock advance, the epoch's own seconds): epoch 2 spends 2 s writing checkpoints after its timed part
    for epoch, (advance, seconds) in enumerate([(6, 6), (4, 4), (11, 9), (4, 4), (6, 6), (0.05, 0.05), (0.5, 0.5),
                                                (0.5, 0.5)]):  # fmt: skip
        now[0] += advance
        plot.on_epoch_end(trainer, {"epoch": epoch, "seconds": seconds})
        epochs += [epoch] * (len(drawn) - len(epochs))
    # 10 s from the first epoch's start (110); 11 s after that drawing, checkpoints included (121); 10 s (131);
    # not epoch 6, one before the last; the last
    assert epochs == [1, 2, 4, 7]
    assert drawn[0] == ([tmp_path / "run"], tmp_path / "run" / "curves.png", ["run"])
    for seconds, draws in ((9.99, 0), (10.0, 1), (None, 1)):  # the default interval, 10 s; no time: at once
        PlotCurves(clock=lambda: 50.0).on_epoch_end(trainer, {"epoch": 0} | ({"seconds": seconds} if seconds else {}))
        assert len(drawn) == 4 + draws
        del drawn[4:]
    assert PlotCurves().clock is time.monotonic
