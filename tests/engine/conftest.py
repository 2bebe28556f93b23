"""Fixtures of the trainer's tests: recording progress bars."""

from __future__ import annotations

import pytest

from visionlab.engine import evaluation as evaluation_module
from visionlab.engine import trainer as trainer_module

from .builders import Bars


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Bars:
    """Every progress bar the trainer and ``evaluate`` make, recorded instead of shown."""
    bars = Bars()
    monkeypatch.setattr(trainer_module, "progress_bar", bars)  # the epochs' bars
    monkeypatch.setattr(evaluation_module, "progress_bar", bars)  # validation's
    return bars
