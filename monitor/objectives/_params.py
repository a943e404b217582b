"""How an objective's parameters are checked when it is built: each refusal names the
field, the rule and the value, and carries the field as :attr:`ObjectiveError.param`.

A parameter reaches an objective from a YAML config (already a float or a list of lists
of floats there) or from Python (anything). A flag is not a number (``min_precision:
true`` was 1.0), nor is text (``"0.9"``), a list (``[[0.9]]`` failed with "'<' not
supported between instances of 'float' and 'list'") or a non-finite value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from monitor.objectives._base import ObjectiveError


def is_number(value: object) -> bool:
    """A real number, not a flag (Python's or numpy's)."""
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def shown(value: object) -> str:
    """``value`` as a message shows it: a number as written (``0.9``, ``nan``), anything
    else by its ``repr`` (``'0.9'``, ``[[0.9]]``)."""
    if isinstance(value, bool | np.bool_) or is_number(value):
        return str(value)
    return repr(value)


@dataclass(frozen=True)
class NumberRule:
    """A finite number in ``(low, high)``, or ``(low, high]`` when ``high_closed``."""

    low: float
    high: float
    high_closed: bool
    finite_said: bool = False  # the rule's text says "finite" (past its bound is too)

    def __str__(self) -> str:
        number = "a finite number" if self.finite_said else "a number"
        return f"{number} in ({self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"

    def check(self, field: str, value: object) -> float:
        """``value`` as a float, else :class:`ObjectiveError` naming ``field``, the rule
        and the value."""
        if is_number(value):
            x = float(value)  # type: ignore[arg-type]  # a Real
            above = x <= self.high if self.high_closed else x < self.high
            if math.isfinite(x) and self.low < x and above:
                return x
        raise ObjectiveError(f"`{field}` must be {self}, got {shown(value)}", param=field)


#: A probability threshold: a decision at 0 or 1 is every request's, or none's.
THRESHOLD = NumberRule(0.0, 1.0, high_closed=False)
#: A floor on precision or recall: 1 is a floor (every hit, no false alarm), 0 none.
FLOOR = NumberRule(0.0, 1.0, high_closed=True)

COST_MATRIX_RULE = (
    "a square matrix of non-negative costs cost[true][predicted], at least 2x2, with a row "
    "whose costs differ"
)


def _rows(value: object) -> list[list[float]] | None:
    """``value``'s rows of numbers, all of one length, or ``None`` if it is no such
    matrix (a flag or text among its entries, ragged rows, a number)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 2 or value.dtype.kind not in "iuf":
            return None
        return [[float(x) for x in row] for row in value]
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return None
    rows: list[list[float]] = []
    for row in value:
        if not isinstance(row, Sequence) or isinstance(row, str | bytes):
            return None
        if not all(is_number(x) for x in row):
            return None
        rows.append([float(x) for x in row])
    if any(len(row) != len(rows[0]) for row in rows):
        return None
    return rows


def check_cost_matrix(value: object) -> np.ndarray:
    """``value`` as a float matrix ``cost[true][predicted]``, else :class:`ObjectiveError`.

    It is square, at least 2x2, of finite non-negative numbers, and some row (a true
    class) costs differently by the predicted class. With every row constant
    (``[[5, 5], [5, 5]]``, or ``[[0, 0], [0, 0]]``) the cost of a request is its label's
    whatever was decided, so every model scores alike: a perfect and a random model
    paired over 5,000 requests stayed at ``continue``, and a comparison or rollback watch
    on it never ended."""
    field = "cost_matrix"
    rows = _rows(value)
    if rows is None:
        raise ObjectiveError(
            f"`{field}` must be a square matrix of numbers, got {value!r}", param=field
        )
    n, k = len(rows), len(rows[0]) if rows else 0
    if n != k or n < 2:
        raise ObjectiveError(
            f"`{field}` must be square, at least 2x2, got {n} row{'' if n == 1 else 's'} "
            f"of {k}: {value!r}",
            param=field,
        )
    m = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(m).all() or (m < 0).any():
        raise ObjectiveError(
            f"`{field}` entries must be finite and non-negative, got {value!r}", param=field
        )
    if (m == m[:, :1]).all():
        raise ObjectiveError(
            f"`{field}` must have a row (a true class) whose costs differ between the "
            "predicted classes: with every row constant no decision changes the cost, so "
            f"no model scores better than another, got {value!r}",
            param=field,
        )
    return m
