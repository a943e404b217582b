"""Building an always-valid method from its configured name."""

from __future__ import annotations

from typing import Literal

from shadow.stats._errors import StatsError
from shadow.stats.always_valid._base import AlwaysValidMethod
from shadow.stats.always_valid._confidence_sequence import ConfidenceSequence
from shadow.stats.always_valid._msprt import MSPRT

MethodName = Literal["confidence_sequence", "msprt"]
METHODS: tuple[MethodName, ...] = ("confidence_sequence", "msprt")


def make_method(
    method: str, *, alpha: float, planned_n: int, mixing_sd: float | None = None
) -> AlwaysValidMethod:
    """Build the always-valid method named ``method``."""
    if method == "confidence_sequence":
        if mixing_sd is not None:
            raise StatsError(
                "`mixing_sd` applies to method 'msprt' only, got a value with "
                "method 'confidence_sequence'"
            )
        return ConfidenceSequence(alpha=alpha, planned_n=planned_n)
    if method == "msprt":
        return MSPRT(alpha=alpha, planned_n=planned_n, mixing_sd=mixing_sd)
    raise StatsError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
