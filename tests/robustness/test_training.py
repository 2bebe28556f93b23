"""Adversarial training objectives: losses equal hand computations, BN statistics move only in the loss's
train-mode forwards, settings are validated, and an objective plugs into the Trainer as its task."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionlab.engine import TrainConfig, Trainer
from visionlab.errors import ConfigError
from visionlab.robustness.attacks import PGD
from visionlab.robustness.training import (
    FGSMRSTraining,
    NFGSMTraining,
    PGDTraining,
    TRADESTraining,
    robust_accuracy_on_batch,
)

from ..statistical import Statistic
from .conftest import Forwards, batch, predicted, tiny_model

EPS_C = (0.02, 0.03, 0.04)


def _bn_model(seed: int = 0) -> nn.Module:
    model = tiny_model(bn=True, seed=seed)
    model.train()
    return model


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def _assert_same_bn(a: nn.Module, b: nn.Module, forwards: int) -> None:
    sa, sb = _bn_state(a), _bn_state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert int(sa["net.1.num_batches_tracked"]) == forwards


def test_mix_one_is_plain_clean_loss_with_label_smoothing() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    manual = copy.deepcopy(model)
    loss, logits = PGDTraining(0.03, steps=2, mix=1.0, criterion=nn.CrossEntropyLoss(label_smoothing=0.1))(model, x, y)
    expected_logits = manual(x)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(loss, F.cross_entropy(expected_logits, y, label_smoothing=0.1), rtol=0, atol=0)
    _assert_same_bn(model, manual, forwards=1)  # no attack ran


def _pgd_with_batch_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: torch.Tensor, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """L∞ PGD (random start) by hand against ``model`` normalizing with the batch's statistics; a copy of the
    model attacks, so the running statistics of ``model`` cannot move."""
    attacker = copy.deepcopy(model).train()
    for m in attacker.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    eps = torch.tensor(EPS_C, dtype=x.dtype).view(1, 3, 1, 1)
    adv = (x + (2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(attacker(adv), y), adv)
        adv = (x + (adv.detach() + step * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def test_pgd_training_equals_a_manual_run_and_updates_bn_only_in_train_forwards() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    manual = copy.deepcopy(model)
    objective = PGDTraining(EPS_C, steps=3, mix=0.25, generator=torch.Generator().manual_seed(0))
    loss, logits = objective(model, x, y)
    assert model.training and all(m.training for m in model.modules())

    step = torch.tensor([2.5 * e / 3 for e in EPS_C], dtype=x.dtype).view(1, 3, 1, 1)  # the default step
    adv = _pgd_with_batch_stats(manual, x, y, step, steps=3, gen=torch.Generator().manual_seed(0))
    clean, robust = manual(x), manual(adv)  # train mode: two BN updates, clean first
    expected = 0.25 * F.cross_entropy(clean, y) + 0.75 * F.cross_entropy(robust, y)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(logits, robust, rtol=0, atol=1e-14)  # logits of the adversarial examples
    _assert_same_bn(model, manual, forwards=2)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_fgsm_rs_example_is_the_wong_et_al_step_and_stays_in_the_ball() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    adv = FGSMRSTraining(EPS_C, generator=torch.Generator().manual_seed(3)).adversarial(model, x, y)
    eps = torch.tensor(EPS_C, dtype=x.dtype).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(3)
    start = (x + (2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1) * eps).clamp(0, 1)
    start.requires_grad_(True)
    attacker = copy.deepcopy(model).train()  # the training attack normalizes with the batch's statistics
    for m in attacker.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    (grad,) = torch.autograd.grad(F.cross_entropy(attacker(start), y), start)
    expected = (x + (start.detach() + 1.25 * eps * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-15)
    assert torch.all((adv - x).abs().amax(dim=(0, 2, 3)) <= eps.flatten() + 1e-15)
    assert adv.min() >= 0 and adv.max() <= 1


def _batch_stats_copy(model: nn.Module) -> nn.Module:
    """A train-mode copy normalizing with each batch's own statistics and tracking none (the training attack)."""
    attacker = copy.deepcopy(model).train()
    for m in attacker.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    return attacker


def _n_fgsm_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: float, alpha: torch.Tensor, seed: int):
    """de Jorge et al.'s N-FGSM, as their training loop writes it: eta uniform in [-k eps, k eps], kept in [0, 1]
    (``clamp(eta, -x, 1 - x)``), one signed step of ``alpha`` from ``x + eta``, clamped to [0, 1], no projection."""
    eps = torch.tensor(EPS_C, dtype=x.dtype).view(1, 3, 1, 1)
    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype) - 1) * k * eps
    eta = torch.max(torch.min(eta, 1 - x), -x).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(_batch_stats_copy(model)(x + eta), y), eta)
    delta = eta.detach() + alpha * grad.sign()
    return x + torch.max(torch.min(delta, 1 - x), -x)


def test_n_fgsm_example_is_noise_then_one_unprojected_step() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    eps = torch.tensor(EPS_C, dtype=x.dtype).view(1, 3, 1, 1)
    adv = NFGSMTraining(EPS_C, generator=torch.Generator().manual_seed(3)).adversarial(model, x, y)
    torch.testing.assert_close(adv, _n_fgsm_by_hand(model, x, y, 2.0, eps, seed=3), rtol=0, atol=1e-15)
    reach = (adv - x).abs().amax(dim=(0, 2, 3))
    assert torch.all(reach > 2.5 * eps.flatten()) and torch.all(reach <= 3 * eps.flatten() + 1e-15)  # not projected
    assert adv.min() >= 0 and adv.max() <= 1
    given = NFGSMTraining(EPS_C, step=0.01, noise=0.5, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        given.adversarial(model, x, y),
        _n_fgsm_by_hand(model, x, y, 0.5, torch.tensor(0.01, dtype=x.dtype), seed=4),
        rtol=0,
        atol=1e-15,
    )


def test_n_fgsm_loss_mixes_clean_and_adversarial_like_the_others() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    manual = copy.deepcopy(model)
    objective = NFGSMTraining(0.05, mix=0.25, criterion=nn.CrossEntropyLoss(label_smoothing=0.2),
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    loss, logits = objective(model, x, y)
    eps = torch.full((1, 3, 1, 1), 0.05, dtype=x.dtype)
    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype) - 1) * 2 * eps
    start = (x + eta).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(_batch_stats_copy(manual)(start), y), start)  # the adversary: CE
    adv = (start.detach() + 0.05 * grad.sign()).clamp(0, 1)
    clean, robust = manual(x), manual(adv)
    expected = 0.25 * F.cross_entropy(clean, y, label_smoothing=0.2) + 0.75 * F.cross_entropy(
        robust, y, label_smoothing=0.2
    )
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(logits, robust, rtol=0, atol=1e-14)
    _assert_same_bn(model, manual, forwards=2)


def test_n_fgsm_balls_default_step_and_cap() -> None:
    default = NFGSMTraining(0.1)
    assert (default.threat.step_size, default.noise_ball.eps) == (0.1, 0.2)  # step eps, noise 2 eps (the paper's)
    assert default.threat.eps == pytest.approx(0.3)  # noise + one step: the projection never binds
    assert NFGSMTraining(0.1, step=0.05, noise=1.0).threat.eps == pytest.approx(0.15)
    per_channel = NFGSMTraining((0.1, 0.2, 0.4), step=0.05)
    assert per_channel.noise_ball.eps == pytest.approx((0.2, 0.4, 0.8))
    assert per_channel.threat.eps == pytest.approx((0.25, 0.45, 0.85))
    large = NFGSMTraining(0.4, noise=3.0)
    assert (large.noise_ball.eps, large.threat.eps) == (1.0, 1.0)  # capped: past 1 nothing in [0, 1] is cut
    assert NFGSMTraining(torch.tensor([0.1, 0.3, 0.6])).threat.eps == pytest.approx((0.3, 0.9, 1.0))


def test_trades_beta_zero_is_clean_cross_entropy() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    manual = copy.deepcopy(model)
    loss, logits = TRADESTraining(0.03, beta=0.0)(model, x, y)
    expected = manual(x)
    torch.testing.assert_close(loss, F.cross_entropy(expected, y), rtol=0, atol=0)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    _assert_same_bn(model, manual, forwards=1)


def _trades_adversary_by_hand(model: nn.Module, x: torch.Tensor, eps: float, step: float, steps: int, seed: int):
    """TRADES' official attack loop: x + 0.001 N(0, 1), then signed steps up KL(p(x) || p(x_adv)) (summed)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    x_adv = (x + (0.001 * torch.randn(x.shape, generator=gen, dtype=x.dtype)).clamp(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    model.train()
    return x_adv


def test_trades_loss_equals_a_hand_computation() -> None:
    model, x = _bn_model(), batch()
    y = torch.arange(8) % 5
    manual = copy.deepcopy(model)
    loss, logits = TRADESTraining(0.03, beta=6.0, steps=3, step=0.01, generator=torch.Generator().manual_seed(5))(
        model, x, y
    )
    adv = _trades_adversary_by_hand(manual, x, 0.03, 0.01, 3, seed=5)
    clean, robust = manual(x), manual(adv)
    p = F.softmax(clean, dim=1)
    kl = (p * (p.log() - F.log_softmax(robust, dim=1))).sum(dim=1).mean()
    assert kl > 0
    torch.testing.assert_close(loss, F.cross_entropy(clean, y) + 6.0 * kl, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits, clean, rtol=0, atol=0)  # logits of the clean examples
    _assert_same_bn(model, manual, forwards=2)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PGDTraining(-0.1), "eps"),
        (lambda: PGDTraining(1.5), "eps"),
        (lambda: PGDTraining(0.1, steps=0), "steps"),
        (lambda: PGDTraining(0.1, norm="l1"), "norm"),
        (lambda: PGDTraining(0.1, mix=1.5), "mix"),
        (lambda: FGSMRSTraining(-0.03), "eps"),
        (lambda: FGSMRSTraining(0.03, mix=-0.1), "mix"),
        (lambda: TRADESTraining(0.03, beta=-1.0), "beta"),
        (lambda: TRADESTraining(0.03, steps=0), "steps"),
        (lambda: TRADESTraining(2.0), "eps"),
        (lambda: FGSMRSTraining(0.03, mix=1.5), "mix"),
        (lambda: TRADESTraining(0.03, init_std=-0.1), "init_std"),
        (lambda: NFGSMTraining(-0.03), "eps"),
        (lambda: NFGSMTraining(0.03, step=-0.01), "step"),
        (lambda: NFGSMTraining(0.03, noise=-1.0), "noise"),
        (lambda: NFGSMTraining(0.03, noise=float("inf")), "noise"),
        (lambda: NFGSMTraining(0.03, mix=1.5), "mix"),
    ],
)
def test_bad_training_settings_raise_config_error(make, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


def test_default_and_given_steps_of_every_objective() -> None:
    assert FGSMRSTraining(0.1).threat.step_size == pytest.approx(0.125)  # 1.25 eps (Wong et al.)
    assert FGSMRSTraining(0.1, step=0.05).threat.step_size == 0.05
    assert TRADESTraining(0.1, steps=4).threat.step_size == pytest.approx(0.0625)  # 2.5 eps / steps
    assert TRADESTraining(0.1, steps=4, step=0.03).threat.step_size == 0.03


def test_without_random_start_the_training_attack_is_plain_pgd() -> None:
    model, x = tiny_model(), batch()  # no batch norm: batch statistics change nothing
    y = predicted(model, x)
    adv = PGDTraining(0.05, steps=3, step=0.02, random_start=False).adversarial(model, x, y)
    expected = PGD(model, 0.05, 0.02, steps=3, random_start=False)(x, y)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


def test_a_zero_weight_skips_its_forward_and_its_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = Forwards(tiny_model()), batch()
    y = predicted(model.model, x)
    only_clean = PGDTraining(0.05, steps=2, mix=1.0)
    monkeypatch.setattr(only_clean, "adversarial", lambda *a: pytest.fail("mix=1 must not attack"))
    only_clean(model, x, y)
    assert model.sizes == [8]  # one clean forward, no attack
    model.sizes.clear()
    PGDTraining(0.05, steps=2, mix=0.0)(model, x, y)
    assert model.sizes == [8, 8, 8]  # the attack's two forwards, then the adversarial one; no clean forward


def test_under_ddp_the_pair_goes_through_one_forward_and_splits_back(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from visionlab.robustness.training import _forward_pair

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = Forwards(tiny_model())
        first, second = batch(2), batch(5, seed=2)  # 2 and 5 images of 3 channels: no size coincides
        a, b = _forward_pair(DistributedDataParallel(model), first, second)
    finally:
        dist.destroy_process_group()
    assert model.sizes == [7]  # one forward of the concatenation
    torch.testing.assert_close(a, model.model(first), rtol=0, atol=1e-12)
    torch.testing.assert_close(b, model.model(second), rtol=0, atol=1e-12)


@pytest.mark.statistical(seed=0)
def test_robust_accuracy_on_batch(stat_seed: int, stat: Statistic) -> None:
    model, x = _bn_model(stat_seed), batch(16, seed=stat_seed + 1)
    model.eval()
    y = predicted(model, x)
    y[:4] = (y[:4] + 1) % 5
    model.train()
    before = _bn_state(model)
    assert robust_accuracy_on_batch(model, x, y, PGD(model, 0.0, 0.01, steps=1)) == 75.0
    stat.check("PGD top-1 (clean 75)", robust_accuracy_on_batch(model, x, y, PGD(model, 0.1, 0.03, steps=5)), "<", 75)
    assert model.training and all(torch.equal(v, _bn_state(model)[k]) for k, v in before.items())
    one = PGD(model, 0.0, 0.01, steps=1)
    assert robust_accuracy_on_batch(model, x[:1], y[:1], one) == 0.0  # one example, mislabelled: 0 of 1
    assert robust_accuracy_on_batch(model, x[4:5], y[4:5], one) == 100.0  # one example, right: 1 of 1


def test_pgd_training_takes_the_step_given_or_2_5_eps_over_steps() -> None:
    assert PGDTraining(0.1, steps=4).threat.step_size == pytest.approx(0.0625)
    assert PGDTraining(0.1, steps=4, step=0.03).threat.step_size == 0.03


def test_an_objective_plugs_into_the_trainer(tiny_fmnist: str, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=tiny_fmnist, out=str(tmp_path), epochs=1, batch_size=16, limit_train=32, workers=0, progress=False,
        tensorboard=False, print_freq=1,
    )  # fmt: skip
    trainer = Trainer(cfg, task=PGDTraining(0.1, steps=2, mix=0.5))
    summary = trainer.train_one_epoch(0)
    trainer.log.close()
    assert summary["n"] == 32 and summary["loss"] > 0


@pytest.mark.parametrize("adv_train", ["fgsm-rs", "trades"])
def test_adversarial_training_is_built_from_the_config_and_resumes_exactly(
    tiny_fmnist: str, tmp_path: Path, adv_train: str
) -> None:
    """Random starts draw from the global RNG, which checkpoints capture: a run stopped in its second epoch and
    resumed ends with the very same weights as an uninterrupted one."""
    from visionlab.engine import CHECKPOINT

    def cfg(out: Path) -> TrainConfig:
        return TrainConfig(
            data=tiny_fmnist, out=str(out), epochs=2, batch_size=16, workers=0, progress=False, tensorboard=False,
            lr=0.01, adv_train=adv_train, adv_eps=0.1, adv_steps=2, select_by="robust", robust_val=16,
        )  # fmt: skip

    reference = Trainer(cfg(tmp_path / "ref"), callbacks=[])
    assert isinstance(reference.task, FGSMRSTraining if adv_train == "fgsm-rs" else TRADESTraining)
    reference.fit()

    class Stop(Exception):
        pass

    stopped = Trainer(cfg(tmp_path / "run"), callbacks=[])
    calls, task = {"n": 0}, stopped.task

    def stop_in_epoch_two(model, images, target):  # 96 images / 16 = 6 steps per epoch
        calls["n"] += 1
        if calls["n"] == 9:
            raise Stop
        return task(model, images, target)

    stopped.task = stop_in_epoch_two
    with pytest.raises(Stop):
        stopped.fit()
    resumed = Trainer(cfg(tmp_path / "run"), resume=tmp_path / "run" / CHECKPOINT, callbacks=[])
    resumed.fit()
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.best_robust_top1 == reference.best_robust_top1


@pytest.mark.statistical(seed=1)
def test_fgsm_rs_training_raises_pgd_accuracy_without_masking_gradients(
    tmp_path: Path, stat_seed: int, stat: Statistic
) -> None:
    """On data whose class is a bright row, six epochs of FGSM-RS at eps 0.2 give a model that PGD-10 at eps 0.2
    hardly fools, while the standard model loses most of its accuracy. No gradient masking: its FGSM accuracy is
    not above its clean accuracy, and multi-step PGD finds at least as much. (Four epochs, as this test once had,
    left the FGSM-RS model half-trained: its PGD gap over the standard one ranged 9-72 points over ten seeds.)"""
    import contextlib
    import io

    from torch.utils.data import DataLoader

    from visionlab.robustness import FGSM, robust_evaluate

    from ..conftest import make_fashion_mnist

    data = f"fashion-mnist:{make_fashion_mnist(tmp_path / 'fm', n_train=320, n_test=64, seed=stat_seed)}"
    results = {}
    for adv in (None, "fgsm-rs"):
        cfg = TrainConfig(
            data=data, out=str(tmp_path / str(adv)), epochs=6, batch_size=32, workers=0, progress=False,
            tensorboard=False, lr=3e-3, optimizer="adamw", adv_train=adv, adv_eps=0.2, seed=stat_seed,
        )  # fmt: skip
        trainer = Trainer(cfg, callbacks=[])
        with contextlib.redirect_stderr(io.StringIO()):
            trainer.fit()
        model, loader = trainer.model.eval(), DataLoader(trainer.bundle.val, batch_size=64)
        pgd = robust_evaluate(model, loader, PGD(model, 0.2, 0.05, 10, random_start=False), "cpu")
        fgsm = robust_evaluate(model, loader, FGSM(model, 0.2), "cpu")
        results[adv] = (pgd["clean_top1"], fgsm["robust_top1"], pgd["robust_top1"])
    (_, _, standard_pgd), (clean, fgsm_acc, pgd_acc) = results[None], results["fgsm-rs"]
    # Measured over 20 seeds x {1, 2} threads x {AVX-512, AVX2} = 80 runs (bench/statistical_tests.py, the table in
    # docs/TESTING.md): FGSM-RS PGD-10 top-1 75-100 % (one run at 75, the next lowest 87.5; sd 3.8), so the bound
    # sits 4 spreads below the worst. The standard model's PGD top-1 spans 0-69 % and moves by up to 30 points
    # between kernels at one seed, so its gap to FGSM-RS (31-100 points, mean 67, sd 16) is asserted only to be
    # positive: 4 spreads below the mean, 2 below the worst. (The old bound, a 15-point gap after four epochs, broke
    # at one thread on an Intel Xeon; over ten seeds that gap ranged 9-72.)
    stat.check("FGSM-RS PGD top-1", pgd_acc, ">=", 60)
    stat.check("FGSM-RS PGD top-1 - standard PGD top-1", pgd_acc - standard_pgd, ">", 0)
    # No gradient masking: FGSM finds no more than PGD, and no accuracy is gained under attack (equal at 100 %).
    stat.check("FGSM-RS FGSM top-1 - PGD top-1", fgsm_acc - pgd_acc, ">=", 0)
    stat.check("FGSM-RS clean top-1 - FGSM top-1", clean - fgsm_acc, ">=", 0)


def test_settings_from_tensors_and_refusals_in_whole() -> None:
    assert PGDTraining(torch.tensor(0.1), steps=4).threat.step_size == pytest.approx(0.0625)  # 2.5 * 0.1 / 4
    assert PGDTraining((0.1, 0.2, 0.3), steps=5).threat.step_size == pytest.approx((0.05, 0.1, 0.15))
    assert TRADESTraining(0.1, beta=24.0).beta == 24.0  # no upper bound: 6 is the paper's default, not a limit
    assert NFGSMTraining(0.1, noise=0.0).noise_ball.eps == 0.0  # the lowest noise: none
    cases = [
        (lambda: PGDTraining(0.1, mix=1.5), "mix: must be in [0, 1], got 1.5"),
        (lambda: PGDTraining(0.1, mix=True), "mix: must be a finite number >= 0, got True"),
        (lambda: PGDTraining(0.1, mix=float("nan")), "mix: must be a finite number >= 0, got nan"),
        (lambda: TRADESTraining(0.1, beta=-1.0), "beta: must be a finite number >= 0, got -1.0"),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError) as info:
            make()
        assert str(info.value) == message


def test_the_training_batch_range_check_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionlab.robustness import training

    calls = []
    monkeypatch.setattr(training, "check_images", lambda images, target: calls.append(images.shape[0]))
    model, x = tiny_model(), batch(4)
    objective = FGSMRSTraining(0.05)
    for _ in range(3):
        objective(model, x, predicted(model, x))
    assert calls == [4]  # the first batch only: a check per step would sync with the device every step


def test_radius_scale_scales_every_ball_and_step_and_one_restores_them_exactly() -> None:
    """The ε curriculum's lever: at scale f each objective attacks as if built with f times its radii."""
    cases = [
        (PGDTraining(0.1, steps=4), 0.1, 0.0625),
        (PGDTraining(0.1, steps=4, step=0.03), 0.1, 0.03),
        (FGSMRSTraining(0.1), 0.1, 0.125),
        (TRADESTraining(0.1, steps=4), 0.1, 0.0625),
    ]
    for objective, eps, step in cases:
        objective.set_radius_scale(0.25)
        assert objective.threat.eps == pytest.approx(0.25 * eps) and objective.threat.step_size == pytest.approx(
            0.25 * step
        )
        objective.set_radius_scale(1.0)
        assert (objective.threat.eps, objective.threat.step_size) == (eps, step)
    n_fgsm = NFGSMTraining(0.1)
    n_fgsm.set_radius_scale(0.5)
    assert n_fgsm.noise_ball.eps == pytest.approx(0.1) and n_fgsm.threat.step_size == pytest.approx(0.05)
    assert n_fgsm.threat.eps == pytest.approx(0.15)  # noise 2 x 0.05 plus one step of 0.05


def test_a_scaled_objective_crafts_the_examples_of_one_built_at_the_smaller_radius() -> None:
    model, x = _bn_model(), batch()
    y = predicted(model, x)
    scaled = FGSMRSTraining(0.08)
    scaled.set_radius_scale(0.5)
    torch.manual_seed(3)
    got = scaled.adversarial(model, x, y)
    torch.manual_seed(3)
    expected = FGSMRSTraining(0.04).adversarial(model, x, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    scaled.set_radius_scale(0.0)  # radius 0: the clean images themselves
    assert torch.equal(scaled.adversarial(model, x, y), x)


@pytest.mark.parametrize("factor", [-0.1, 1.5, float("nan")])
def test_a_radius_scale_outside_zero_one_is_refused(factor: float) -> None:
    with pytest.raises(ConfigError) as info:
        PGDTraining(0.1).set_radius_scale(factor)
    assert info.value.field == "radius_scale"
