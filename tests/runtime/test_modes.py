"""``runtime/modes.py``: ``eval_mode``, the one way analyses put a model in eval mode and give every submodule
its own mode back, also when the body raises."""

from __future__ import annotations

import pytest

from visionlab.runtime import eval_mode

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
