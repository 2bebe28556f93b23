"""The ε curriculum (``--adv-eps-ramp``): the radius each training step attacks with equals the hand-computed
linear schedule of the global step, the robust monitor keeps the full radius, a resumed run equals the
uninterrupted one, and the settings that cannot be read are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionlab.engine import CHECKPOINT, EpsilonRamp, StepScheduled, TrainConfig, Trainer, build_task, load_checkpoint
from visionlab.errors import ConfigError
from visionlab.robustness import FGSMRSTraining, PGDTraining


def test_the_factor_is_the_step_over_the_ramp_capped_at_one() -> None:
    ramp = EpsilonRamp(PGDTraining(0.1), ramp_steps=4)
    assert [ramp.factor(t) for t in (0, 1, 2, 3, 4, 9)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert isinstance(ramp, StepScheduled)


def test_build_task_ramps_over_the_epochs_counted_in_steps() -> None:
    cfg = TrainConfig(adv_train="pgd", adv_eps=0.1, epochs=4, adv_eps_ramp=1.5)
    task = build_task(cfg, steps_per_epoch=7)
    assert isinstance(task, EpsilonRamp) and task.ramp_steps == 10  # round(1.5 x 7)
    assert type(task.objective) is PGDTraining and task.objective.eps == 0.1
    assert type(build_task(TrainConfig(adv_train="pgd", adv_eps_ramp=0.0))) is PGDTraining  # no ramp: no wrapper
    with pytest.raises(ConfigError) as err:
        build_task(cfg)
    assert err.value.field == "adv_eps_ramp"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(adv_eps_ramp=1.0), "needs adv_train"),
        (dict(adv_train="fgsm-rs", adv_eps_ramp=-0.5), "must be a number >= 0"),
        (dict(adv_train="fgsm-rs", adv_eps_ramp=3.5), r"must be in \[0, epochs\] = \[0, 3\]"),
    ],
)
def test_config_refuses_a_ramp_it_cannot_run(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        TrainConfig(epochs=3, **kw).validate()
    assert err.value.field == "adv_eps_ramp"


def _cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=data, out=str(out), epochs=3, batch_size=16, lr=0.02, warmup=0.5, workers=0, progress=False,
        tensorboard=False, seed=5, adv_train="fgsm-rs", adv_eps=0.1, adv_eps_ramp=1.5, select_by="robust",
        robust_val=16,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_each_step_trains_at_the_hand_computed_radius_and_the_monitor_at_the_full_one(
    tiny_fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6 steps an epoch, a ramp of 1.5 epochs = 9 steps: step t attacks at 0.1 min(1, t / 9), step 1.25 times it."""
    seen: list[tuple[float, float]] = []
    call = FGSMRSTraining.__call__

    def recording(self, model, images, target):
        seen.append((self.threat.eps, self.threat.step_size))
        return call(self, model, images, target)

    monkeypatch.setattr(FGSMRSTraining, "__call__", recording)
    trainer = Trainer(_cfg(tiny_fmnist, tmp_path / "run"))
    monitored: list[float] = []
    measure = trainer.monitor.measure
    trainer.monitor.measure = lambda model: monitored.append(trainer.monitor.eps) or measure(model)
    trainer.fit()
    expected = [0.1 * min(1.0, t / 9) for t in range(18)]
    assert [eps for eps, _ in seen] == pytest.approx(expected, abs=1e-12)
    assert [step for _, step in seen] == pytest.approx([1.25 * e for e in expected], abs=1e-12)
    assert seen[9:] == [(0.1, 0.125)] * 9  # the full radius exactly, once the ramp is over
    assert monitored == [0.1] * 3


class _Stop(Exception):
    pass


class _StopAt:
    """The ramp's objective, raising at its n-th call: a kill in the middle of an epoch."""

    def __init__(self, objective, n: int) -> None:
        self.objective, self.n, self.calls = objective, n, 0

    def set_radius_scale(self, factor: float) -> None:
        self.objective.set_radius_scale(factor)

    def __call__(self, model, images, target):
        self.calls += 1
        if self.calls == self.n:
            raise _Stop
        return self.objective(model, images, target)


@pytest.mark.parametrize("adv_train", ["fgsm-rs", "pgd"])
def test_a_run_killed_during_the_ramp_resumes_bit_for_bit(tiny_fmnist: str, tmp_path: Path, adv_train: str) -> None:
    """Killed at the 2nd step of epoch 2 (global step 7, mid-ramp): the resumed run continues the same radii."""
    extra = dict(adv_train=adv_train, adv_steps=2) if adv_train == "pgd" else {}
    reference = Trainer(_cfg(tiny_fmnist, tmp_path / "ref", **extra))
    reference.fit()
    stopped = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **extra))
    stopped.task.objective = _StopAt(stopped.task.objective, 8)
    with pytest.raises(_Stop):
        stopped.fit()
    resumed = Trainer(_cfg(tiny_fmnist, tmp_path / "run", **extra), resume=tmp_path / "run" / CHECKPOINT)
    resumed.fit()
    ref, run = load_checkpoint(tmp_path / "ref" / CHECKPOINT), load_checkpoint(tmp_path / "run" / CHECKPOINT)
    for key, value in ref["model"].items():
        assert torch.equal(value, run["model"][key]), key
    assert (ref["best_robust_top1"], ref["last_robust_top1"]) == (run["best_robust_top1"], run["last_robust_top1"])
