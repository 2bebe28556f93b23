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


def test_min_factor_floor_and_steps_past_the_end() -> None:
    # no warmup, 4 cosine steps down to 0.2: 1, 0.2 + 0.8 * 0.5 * (1 + cos(pi/4)), 0.6, ..., 0.2, then 0.2 forever
    assert warmup_cosine_factor(0, 0, 4, 0.2) == pytest.approx(1.0)
    assert warmup_cosine_factor(1, 0, 4, 0.2) == pytest.approx(0.2 + 0.4 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine_factor(2, 0, 4, 0.2) == pytest.approx(0.6)
    assert warmup_cosine_factor(4, 0, 4, 0.2) == pytest.approx(0.2)
    assert warmup_cosine_factor(9, 0, 4, 0.2) == pytest.approx(0.2)  # progress capped at 1
    assert warmup_cosine_factor(9, 0, 4) == pytest.approx(0.0)


def test_a_one_step_cosine_and_a_schedule_all_warmup() -> None:
    # one cosine step after 3 warmup steps: the span is 1, so step 4 is already at the end
    assert [warmup_cosine_factor(s, 3, 4) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.0])
    # total <= warmup: the span is clamped to one step, never zero or negative
    assert warmup_cosine_factor(3, 3, 3) == pytest.approx(1.0)
    assert warmup_cosine_factor(4, 3, 3) == pytest.approx(0.0)
    assert warmup_cosine_factor(4, 3, 2) == pytest.approx(0.0)


def test_scheduler_state_round_trip_continues_the_schedule() -> None:
    """A fresh scheduler loaded from another's state_dict gives the same learning rates from there on."""

    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, WarmupCosine(opt, warmup_steps=3, total_steps=10)

    opt, sched = make()
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state and "lr_lambdas" not in state
    assert state["warmup_steps"] == 3 and state["total_steps"] == 10 and state["last_epoch"] == 5
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    assert sched2.optimizer is opt2  # the new optimizer, not one from the state
    lrs = []
    for sch, o in ((sched, opt), (sched2, opt2)):
        o.step()
        sch.step()
        lrs.append(o.param_groups[0]["lr"])
    assert lrs[0] == lrs[1] == pytest.approx(warmup_cosine_factor(6, 3, 10))
