"""The optimizer: parameter groups (weight decay, head learning rate) and SGD or AdamW over them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visionlab.engine.config import TrainConfig
from visionlab.errors import ConfigError
from visionlab.models.finetune import split_head

__all__ = ["build_optimizer", "param_groups"]


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: with ``wd_exclude_norm_bias`` biases, norm weights (all 1-d parameters)
    and position embeddings get no weight decay; with ``head_lr_mult != 1`` the classifier head's parameters get
    ``lr * head_lr_mult``. Order: backbone (decay, no decay), then head, empty groups left out, so group 0 carries
    the base lr. Frozen parameters are included (they get no gradient, so no step and no decay): the groups stay
    the same when the backbone is unfrozen mid-run, which keeps exact resume exact."""
    head = {id(p) for _, p in split_head(model)[1]} if cfg.head_lr_mult != 1.0 else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, n): [] for h in (False, True) for n in (False, True)}
    for name, p in model.named_parameters():
        no_decay = cfg.wd_exclude_norm_bias and (p.ndim <= 1 or name.endswith("pos_embed"))
        buckets[id(p) in head, no_decay].append(p)
    groups = [
        {"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
         "lr": cfg.lr * (cfg.head_lr_mult if is_head else 1.0)}
        for (is_head, no_decay), params in buckets.items() if params
    ]  # fmt: skip
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"must be sgd or adamw, got {cfg.optimizer!r}", field="optimizer")
