"""The shared numeric checks: what counts as a number (never a bool, never NaN or infinite), the boundaries of
each check (nearest passing and nearest failing value), and the exact messages every caller relies on."""

from __future__ import annotations

import math

import pytest

from visionlab.checks import check_integer, check_number, is_number
from visionlab.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "integer", "expected"),
    [
        (0, True, True), (-3, True, True), (10**400, True, True), (2.0, True, False), (True, True, False),
        (False, True, False), ("1", True, False), (None, True, False),
        (0, False, True), (2.5, False, True), (-1e308, False, True), (10**400, False, True), (True, False, False),
        (math.nan, False, False), (math.inf, False, False), (-math.inf, False, False), ("2.5", False, False),
    ],
)  # fmt: skip
def test_is_number(value: object, integer: bool, expected: bool) -> None:
    assert is_number(value, integer=integer) is expected


def _message(call) -> tuple[str, str | None]:
    with pytest.raises(ConfigError) as info:
        call()
    return info.value.message, info.value.field


def test_check_integer_boundaries_and_messages() -> None:
    assert check_integer(1, "steps", minimum=1) == 1 and check_integer(-5, "seed") == -5
    assert check_integer(None, "batch_size", minimum=1, optional=True) is None
    assert _message(lambda: check_integer(0, "steps", minimum=1)) == ("must be an integer >= 1, got 0", "steps")
    assert _message(lambda: check_integer(True, "steps", minimum=1)) == ("must be an integer >= 1, got True", "steps")
    assert _message(lambda: check_integer(1.0, "seed")) == ("must be an integer, got 1.0", "seed")
    assert _message(lambda: check_integer(None, "seed")) == ("must be an integer, got None", "seed")
    assert _message(lambda: check_integer(0, "batch_size", minimum=1, optional=True)) == (
        "must be an integer >= 1 or None, got 0", "batch_size",
    )  # fmt: skip
    assert check_integer(0, "samples", minimum=0) == 0
    assert _message(lambda: check_integer(-1, "samples", minimum=0))[0] == "must be an integer >= 0, got -1"


def test_check_number_boundaries_and_messages() -> None:
    assert check_number(0, "threshold") == 0 and check_number(0.5, "noise_std", unit="pixel units") == 0.5
    assert check_number(None, "gain", inclusive=False, optional=True) is None
    assert check_number(1e-12, "gain", inclusive=False) == 1e-12
    assert _message(lambda: check_number(-1e-12, "threshold")) == (
        "must be a finite number >= 0, got -1e-12",
        "threshold",
    )
    assert _message(lambda: check_number(0, "gain", inclusive=False, optional=True)) == (
        "must be a finite number > 0 or None, got 0", "gain",
    )  # fmt: skip
    assert _message(lambda: check_number(math.nan, "noise_std", unit="pixel units")) == (
        "must be a finite number >= 0 (pixel units), got nan", "noise_std",
    )  # fmt: skip
    assert _message(lambda: check_number(True, "threshold"))[0] == "must be a finite number >= 0, got True"
    assert _message(lambda: check_number(None, "threshold"))[0] == "must be a finite number >= 0, got None"
    assert check_number(2, "x", minimum=2) == 2
    assert _message(lambda: check_number(1.5, "x", minimum=2))[0] == "must be a finite number >= 2, got 1.5"
