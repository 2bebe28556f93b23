"""``runtime/modes.py``: ``eval_mode``, the one way analyses put a model in eval mode and give every submodule
its own mode back, also when the body raises; ``channels_last_copy``, the NHWC copy analyses run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.runtime import channels_last_copy, eval_mode

from ..conftest import mixed_model, train_flags


def test_eval_mode_puts_every_submodule_in_eval_and_restores_each_flag() -> None:
    model = mixed_model()
    before = train_flags(model)
    assert before == [True, False, False, False, False, True]
    with eval_mode(model) as inside:
        assert inside is model and train_flags(model) == [False] * 6
    assert train_flags(model) == before


def test_eval_mode_restores_each_flag_when_the_body_raises() -> None:
    model = mixed_model()
    before = train_flags(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert train_flags(model) == before


def test_channels_last_copy_converts_a_copy_once_and_leaves_the_callers_model_alone() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    fast = channels_last_copy(net)
    assert fast is not net
    assert all(not m.weight.is_contiguous(memory_format=torch.channels_last) for m in net if isinstance(m, nn.Conv2d))
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in fast if isinstance(m, nn.Conv2d))
    assert channels_last_copy(fast) is fast  # already converted: no second copy
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), net(x))


def test_channels_last_copy_returns_a_model_without_convolutions_itself() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    assert channels_last_copy(mlp) is mlp
