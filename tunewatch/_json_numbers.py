"""A JSON integer as tunewatch reads one wherever it reads JSON text (the API's request
bodies, the CLI's ``--hyperparameters``): as orjson reads it, so that the same text is
the same value, and the same hyperparameter set, whichever way it arrives."""

from __future__ import annotations

__all__ = ["json_integer"]

_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1  # orjson's integers: int64 and uint64


def json_integer(text: str) -> int | float:
    """The integer ``text`` spells: a Python int within int64 and uint64, the nearest float
    beyond them (as in JavaScript). ``OverflowError`` beyond float64 (orjson refuses it:
    kept as a Python int, a version's free-form ``details`` took it, and every reader that
    checks a number with ``math.isfinite`` overflowed); ``ValueError`` past Python's 4,300
    digits."""
    value = int(text)
    if _INT_LOW <= value <= _INT_HIGH:
        return value
    return float(value)
