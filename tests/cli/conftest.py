"""Fixtures of the command-line tests: the machine's default number of workers fixed, a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import visionlab.runtime.distributed as distributed

from .builders import tiny_checkpoint


@pytest.fixture
def three_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's default number of DataLoader workers is 3 (whatever its CPUs)."""
    monkeypatch.setattr(distributed, "default_workers", lambda: 3)


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A fresh tiny checkpoint in ``tmp_path/run`` (24 validation images; function-scoped, so a mutation run credits
    every test that reaches a function)."""
    return tiny_checkpoint(tmp_path)
