"""The rules tunewatch reads JSON text by wherever it reads it (the API's request bodies,
the CLI's ``--hyperparameters``), so that the same text is the same value, and the same
hyperparameter set, whichever way it arrives: an integer as orjson reads it, and an
object holding a key twice refused (``json`` keeps the last without a word). Each reader
words the refusal its own way."""

from __future__ import annotations

__all__ = ["json_integer", "repeated_key"]

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


def repeated_key(pairs: list[tuple[str, object]]) -> str | None:
    """The first key an object's ``pairs`` (``object_pairs_hook``'s) hold twice, or
    ``None``."""
    if len({key for key, _ in pairs}) == len(pairs):
        return None
    seen: set[str] = set()
    return next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
