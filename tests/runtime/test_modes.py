"""visionlab.runtime: eval_mode, the one way analyses put a model in eval mode and give it back as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionlab.engine import evaluate
from visionlab.runtime import eval_mode


def _mixed() -> nn.Sequential:
    """A training head over a backbone frozen in eval mode: the mixed state ``model.train(flag)`` would lose."""
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5)), nn.Linear(3, 2)).train()
    model[0].eval()
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_puts_every_submodule_in_eval_and_restores_each_flag() -> None:
    model = _mixed()
    before = _flags(model)
    assert before == [True, False, False, False, False, True]
    with eval_mode(model) as inside:
        assert inside is model and _flags(model) == [False] * 6
    assert _flags(model) == before


def test_eval_mode_restores_each_flag_when_the_body_raises() -> None:
    model = _mixed()
    before = _flags(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert _flags(model) == before


def test_evaluate_gives_a_mixed_model_back_as_it_was() -> None:
    model = _mixed()
    before = _flags(model)
    loader = DataLoader(TensorDataset(torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])), batch_size=4)
    evaluate(model, loader, torch.device("cpu"))
    assert _flags(model) == before  # was: every submodule set to the top-level flag (the backbone to training)
