"""Checks of numeric arguments, shared by every module that takes a count, a size or a weight.

A ``bool`` is an ``int`` in Python (``True == 1``), so ``isinstance(x, int)`` alone would let ``steps=True`` pass
as one step; these checks refuse it. Errors are :class:`~visionlab.errors.ConfigError` naming the argument, with
the message ``must be <what>, got <value>``. This module sits on the bottom floor: it imports only
:mod:`visionlab.errors`.
"""

from __future__ import annotations

import math
from typing import Any

from visionlab.errors import ConfigError

__all__ = ["check_integer", "check_number", "is_number"]


def is_number(value: Any, *, integer: bool = False) -> bool:
    """Whether ``value`` is a finite real number: an ``int`` (``integer=True``) or an ``int`` or ``float``, never a
    ``bool``, never NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)  # every int is finite (and may not fit a float)


def check_integer(value: Any, field: str, *, minimum: int | None = None, optional: bool = False) -> Any:
    """Return ``value`` if it is an integer (``>= minimum`` when given; ``None`` too when ``optional``); else
    raise ``ConfigError("must be an integer >= MINIMUM[ or None], got VALUE", field=field)``."""
    if value is None and optional:
        return value
    if not is_number(value, integer=True) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(f"must be an integer{bound}{' or None' if optional else ''}, got {value!r}", field=field)
    return value


def check_number(
    value: Any, field: str, *, minimum: float = 0, inclusive: bool = True, optional: bool = False, unit: str = ""
) -> Any:
    """Return ``value`` if it is a finite number ``>= minimum`` (``> minimum`` when not ``inclusive``; ``None`` too
    when ``optional``); else raise ``ConfigError("must be a finite number >= MINIMUM[ or None][ (UNIT)], got
    VALUE", field=field)``."""
    if value is None and optional:
        return value
    if not is_number(value) or (value < minimum if inclusive else value <= minimum):
        bound = f"{'>=' if inclusive else '>'} {minimum:g}{' or None' if optional else ''}"
        raise ConfigError(f"must be a finite number {bound}{f' ({unit})' if unit else ''}, got {value!r}", field=field)
    return value
