"""``engine/optim.py``: the optimizer's parameter groups (weight decay left out of biases, norms and position
embeddings; the head's own groups at ``lr x head_lr_mult``), against parameters named by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import (
    TrainConfig,
    WarmupCosine,
    build_optimizer,
)
from visionlab.engine.optim import param_groups
from visionlab.models import build_model


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


def test_head_lr_mult_gives_the_head_its_own_groups_and_lr() -> None:
    model = build_model("improved", num_classes=10, in_channels=1, image_size=28)
    cfg = TrainConfig(model="improved", lr=0.02, head_lr_mult=10.0, weight_decay=1e-3, wd_exclude_norm_bias=True)
    optimizer = build_optimizer(model, cfg)
    groups = optimizer.param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.02, 1e-3), (0.02, 0.0), (0.2, 1e-3), (0.2, 0.0)]
    assert groups[2]["params"] == [model.net.fc.weight] and groups[3]["params"] == [model.net.fc.bias]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))  # frozen ones included
    scheduler = WarmupCosine(optimizer, 2, 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert groups[2]["lr"] == pytest.approx(10 * groups[0]["lr"]) and 0 < groups[0]["lr"] < 0.02
    plain = build_optimizer(model, TrainConfig(model="improved"))
    assert len(plain.param_groups) == 1  # head_lr_mult 1: no separate head group
