"""``--channels-last`` on one-channel data: the batches and the model's 4-d weights carry NHWC strides spelled
out (``Tensor.to(memory_format=)``; ``contiguous(memory_format=)`` keeps a one-channel batch's NCHW strides), so
the first convolution runs NHWC too; the values are the NCHW run's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import TrainConfig, Trainer, evaluate

from ..conftest import make_fashion_mnist
from ..statistical import Statistic

CPU = torch.device("cpu")


def _cfg(spec: str, out: Path, **overrides) -> TrainConfig:
    values = dict(
        data=spec, model="simplenet", out=str(out), epochs=1, batch_size=32, workers=0, device="cpu", lr=0.01,
        quiet=True, progress=False, tensorboard=False, limit_train=64, limit_val=16, seed=0,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


class _Strides(nn.Module):
    """Logits from the first two pixels; records the strides of every batch it is given and whether autograd
    was recording."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.stride())
        self.grad_enabled.append(torch.is_grad_enabled())
        return x.flatten(1)[:, :2]


def test_evaluate_feeds_one_channel_batches_with_nhwc_strides_and_records_no_graph() -> None:
    loader = [(torch.rand(2, 1, 3, 4), torch.tensor([0, 1]))]
    model = _Strides()
    evaluate(model, loader, CPU, channels_last=True)
    evaluate(model, loader, CPU, channels_last=False)
    assert model.seen == [(12, 1, 4, 1), (12, 12, 4, 1)]
    assert model.grad_enabled == [False, False] and torch.is_grad_enabled()  # no_grad inside, restored after


@pytest.mark.statistical(seed=0)
def test_channels_last_training_spells_out_the_strides_and_trains_the_nchw_weights(
    tmp_path: Path, stat_seed: int, stat: Statistic
) -> None:
    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', seed=stat_seed)}"
    nhwc = Trainer(_cfg(data, tmp_path / "nhwc", channels_last=True, seed=stat_seed), callbacks=[])
    stem = nhwc.model.net.features[0].weight
    assert stem.shape[1] == 1 and stem.stride() == (49, 1, 7, 1)  # (64, 1, 7, 7): NHWC spelled out
    seen: list[tuple[int, ...]] = []
    nhwc.model.net.features[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].stride()))
    nhwc.fit()
    assert seen[0] == (784, 1, 28, 1) and len(set(seen)) <= 2  # every batch NHWC (the last may be smaller)
    nchw = Trainer(_cfg(data, tmp_path / "nchw", seed=stat_seed), callbacks=[])
    nchw.fit()
    pairs = zip(nhwc.model.state_dict().values(), nchw.model.state_dict().values(), strict=True)
    gap = max((a.double() - b.double()).abs().max().item() for a, b in pairs)
    stat.check("max |NHWC - NCHW| over the trained state", gap, "<=", 1e-4)  # other kernels' rounding
