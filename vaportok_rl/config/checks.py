"""The value checks of config dataclasses' ``__post_init__``: each raises a ValueError (a ConfigError once
:func:`~vaportok_rl.config.from_dict` adds context) naming the dotted key, the value and what was expected."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_non_negative_int", "check_number", "check_positive_int"]


def check_number(
    key: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    """The one range check of config numbers, for ``__post_init__``: ``value`` must be a finite int or float (not a
    bool) with ``value >= low`` (``> low`` when ``low_open``) and ``value <= high`` where given. Raises a ValueError
    (a ConfigError once :func:`from_dict` adds context) naming ``key``, the value and the expected range, e.g.
    ``optim.lr: expected a finite number > 0, got nan``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        where = " " + " and ".join(bounds) if bounds else ""
        raise ValueError(f"{key}: expected a finite number{where}, got {value!r}")


def check_positive_int(key: str, value: Any) -> None:
    """``value`` must be an int (not a bool) >= 1, e.g. ``rollout.decode_chunk: expected a positive integer, got 0``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: expected a positive integer, got {value!r}")


def check_non_negative_int(key: str, value: Any) -> None:
    """``value`` must be an int (not a bool) >= 0, e.g. ``seed: expected a non-negative integer, got -1``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: expected a non-negative integer, got {value!r}")
