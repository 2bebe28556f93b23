from __future__ import annotations

import math

import pytest
import torch

from visionlab.engine import WarmupCosine, warmup_cosine_factor


def test_warmup_then_cosine_by_hand() -> None:
    # 4 warmup steps: 1/5 .. 4/5, then cosine over 10 steps.
    assert [warmup_cosine_factor(s, 4, 14) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert warmup_cosine_factor(4, 4, 14) == pytest.approx(1.0)
    assert warmup_cosine_factor(9, 4, 14) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(14, 4, 14) == pytest.approx(0.0)
    assert warmup_cosine_factor(0, 0, 10) == pytest.approx(1.0)


def test_scheduler_steps_per_iteration_and_state_dict_is_plain() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = WarmupCosine(opt, warmup_steps=2, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1 * 0.5 * (1 + math.cos(math.pi / 4)), 0.05,
                                 0.1 * 0.5 * (1 + math.cos(3 * math.pi / 4))])  # fmt: skip
    state = sched.state_dict()
    assert all(isinstance(v, (int, float, list, bool, type(None))) for v in state.values())
