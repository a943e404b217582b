"""Asymptotic confidence sequence with an empirical-variance plug-in (Waudby-Smith et al.
2023), tuned to be tightest at a planned sample size."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from shadow.stats.always_valid._base import AlwaysValidMethod, optimal_mixing_constant


class ConfidenceSequence(AlwaysValidMethod):
    """``tau^2 = sigma_hat^2 * c(alpha) / planned_n``: scale-free, tightest near
    ``planned_n`` (the mixing variance follows the estimated variance)."""

    name: ClassVar[str] = "confidence_sequence"

    def __init__(self, *, alpha: float, planned_n: int) -> None:
        super().__init__(alpha=alpha, planned_n=planned_n)
        self._scale = optimal_mixing_constant(self.alpha) / self.planned_n

    def mixing_variance(self, unit_variance: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(unit_variance, dtype=np.float64) * self._scale)
