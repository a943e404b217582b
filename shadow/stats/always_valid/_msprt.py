"""Mixture SPRT with normal mixing (Johari, Pekelis & Walsh 2017, "Always valid inference")."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from shadow.stats._errors import StatsError
from shadow.stats.always_valid._base import AlwaysValidMethod, optimal_mixing_constant


class MSPRT(AlwaysValidMethod):
    """mSPRT whose mixing distribution over the effect is ``N(0, mixing_sd^2)``.

    ``mixing_sd`` is a prior guess of effect sizes on the loss scale (Johari et al. pick it
    from past experiments). Without one, ``tau^2 = sigma_hat^2 * c(alpha) / planned_n``, and
    the mSPRT is then exactly the dual of :class:`ConfidenceSequence`: it rejects exactly
    when the normal-mixture confidence sequence excludes zero.
    """

    name: ClassVar[str] = "msprt"

    def __init__(self, *, alpha: float, planned_n: int, mixing_sd: float | None = None) -> None:
        super().__init__(alpha=alpha, planned_n=planned_n)
        if mixing_sd is not None and not (np.isfinite(mixing_sd) and mixing_sd > 0):
            raise StatsError(f"`mixing_sd` must be a positive finite number, got {mixing_sd!r}")
        self.mixing_sd = mixing_sd
        self._scale = optimal_mixing_constant(self.alpha) / self.planned_n

    def mixing_variance(self, unit_variance: np.ndarray) -> np.ndarray:
        unit = np.asarray(unit_variance, dtype=np.float64)
        if self.mixing_sd is None:
            return np.asarray(unit * self._scale)
        return np.full_like(unit, self.mixing_sd**2)
