"""build_task: the objective each configuration asks for, with every hyperparameter passed through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.engine import ClassificationTask, TrainConfig, build_task
from visionlab.errors import ConfigError
from visionlab.robustness import FGSMRSTraining, NFGSMTraining, PGDTraining, TRADESTraining


def test_classification_task_returns_the_criterion_of_the_models_logits() -> None:
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    images, target = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    loss, logits = ClassificationTask(nn.CrossEntropyLoss())(model, images, target)
    assert torch.equal(logits, torch.tensor([[2.0, 0.0, 0.0]]))
    e2 = torch.tensor(2.0).exp()
    assert loss.item() == pytest.approx(-(e2 / (e2 + 2)).log().item())  # -log softmax(2, 0, 0)[0]


def test_plain_training_is_cross_entropy_with_the_configured_label_smoothing() -> None:
    task = build_task(TrainConfig(label_smoothing=0.2))
    assert type(task) is ClassificationTask and isinstance(task.criterion, nn.CrossEntropyLoss)
    assert task.criterion.label_smoothing == 0.2


def test_pgd_training_gets_every_setting() -> None:
    cfg = TrainConfig(adv_train="pgd", adv_eps=0.03, adv_steps=4, adv_step=0.01, adv_mix=0.25, label_smoothing=0.1)
    task = build_task(cfg)
    assert type(task) is PGDTraining
    assert (task.eps, task.steps, task.step, task.mix) == (0.03, 4, 0.01, 0.25)
    assert task.criterion.label_smoothing == 0.1


def test_fgsm_rs_training_gets_every_setting() -> None:
    task = build_task(TrainConfig(adv_train="fgsm-rs", adv_eps=0.05, adv_step=0.06, adv_mix=0.5, label_smoothing=0.3))
    assert type(task) is FGSMRSTraining
    assert (task.eps, task.step, task.mix) == (0.05, 0.06, 0.5)
    assert task.criterion.label_smoothing == 0.3


def test_n_fgsm_training_gets_every_setting() -> None:
    task = build_task(TrainConfig(adv_train="n-fgsm", adv_eps=0.05, adv_step=0.04, adv_mix=0.5, label_smoothing=0.3))
    assert type(task) is NFGSMTraining
    assert (task.eps, task.step, task.noise, task.mix) == (0.05, 0.04, 2.0, 0.5)
    assert task.criterion.label_smoothing == 0.3


def test_trades_training_gets_every_setting() -> None:
    cfg = TrainConfig(adv_train="trades", adv_eps=0.02, trades_beta=3.0, adv_steps=5, adv_step=0.004,
                      label_smoothing=0.05)  # fmt: skip
    task = build_task(cfg)
    assert type(task) is TRADESTraining
    assert (task.eps, task.beta, task.steps, task.step) == (0.02, 3.0, 5, 0.004)
    assert task.criterion.label_smoothing == 0.05


def test_an_unknown_objective_names_the_field_and_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"^adv_train: must be one of pgd, fgsm-rs, n-fgsm, trades or unset, got 'free'$"
    ):
        build_task(TrainConfig(adv_train="free"))  # not validated: build_task checks on its own
