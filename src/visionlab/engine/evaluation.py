"""Evaluation: mean loss, top-1 and top-5 of a model over a loader, exact over the ranks of a distributed job."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from visionlab.progress import progress as progress_bar
from visionlab.runtime import DistContext, RunningStats, autocast, eval_mode

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    tta: bool = False,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "eval",
    dist: DistContext | None = None,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 (%) over ``loader``. ``tta`` averages the logits of each image
    and its horizontal mirror. The model's train/eval mode is restored afterwards. With ``dist``, each rank
    passes its shard (:func:`~visionlab.runtime.distributed.shard_dataset`) and gets the metrics of all of them."""
    stats = RunningStats(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with eval_mode(model):
        for images, target in progress_bar(loader, desc=desc, enabled=progress):
            images = images.to(device, non_blocking=True, memory_format=fmt)  # see Trainer.train_one_epoch
            target = target.to(device, non_blocking=True)
            with autocast(device, amp):
                logits = model(images)
                if tta:
                    logits = 0.5 * (logits + model(images.flip(-1)))
            stats.update(F.cross_entropy(logits.float(), target), logits, target)
    return stats.all_reduce(dist or DistContext()).summary()
