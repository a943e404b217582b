"""Always-valid sequential methods: one normal-mixture martingale, two parametrisations."""

from __future__ import annotations

from shadow.stats.always_valid._base import AlwaysValidMethod, optimal_mixing_constant
from shadow.stats.always_valid._confidence_sequence import ConfidenceSequence
from shadow.stats.always_valid._factory import METHODS, MethodName, make_method
from shadow.stats.always_valid._msprt import MSPRT

__all__ = [
    "METHODS",
    "MSPRT",
    "AlwaysValidMethod",
    "ConfidenceSequence",
    "MethodName",
    "make_method",
    "optimal_mixing_constant",
]
