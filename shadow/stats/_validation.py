"""Argument checks shared by the statistical tests (messages name field, rule and value)."""

from __future__ import annotations

import numpy as np

from shadow.stats._errors import StatsError


def check_alpha(alpha: float, *, field: str = "alpha") -> float:
    if not 0.0 < alpha < 1.0:
        raise StatsError(f"`{field}` must be in (0, 1), got {alpha!r}")
    return float(alpha)


def check_positive_int(value: int, *, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise StatsError(f"`{field}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_sample(values: object, *, field: str, allow_empty: bool = False) -> np.ndarray:
    """A 1-D float64 array of finite values."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise StatsError(f"`{field}` must be 1-D, got shape {array.shape}")
    if not allow_empty and array.size == 0:
        raise StatsError(f"`{field}` must not be empty")
    if not np.all(np.isfinite(array)):
        raise StatsError(f"`{field}` must hold finite values, got NaN or infinity")
    return array
