"""The always-valid family: normal-mixture martingales on an asymptotically normal estimate.

Every member tests ``H0: effect = 0`` for an estimate ``theta_hat`` with (plug-in)
variance ``V`` by mixing the Gaussian likelihood ratio over effects ``N(0, tau^2)``::

    Lambda = sqrt(V / (V + tau^2)) * exp(theta_hat^2 tau^2 / (2 V (V + tau^2)))

``Lambda`` is a nonnegative martingale under the null, so by Ville's inequality
``P(exists n: Lambda_n >= 1/alpha) <= alpha`` (Robbins 1970; Howard et al. 2021, "Time-
uniform, nonparametric, nonasymptotic confidence sequences"). Inverting the test gives
the two-sided confidence sequence ``theta_hat +- sqrt(V (V + tau^2) / tau^2 *
log((V + tau^2) / (V alpha^2)))`` and ``min(1, 1/Lambda)`` is an always-valid p-value.
With the sample variance plugged in the guarantee is asymptotic (Waudby-Smith et al. 2023,
"Time-uniform central limit theory and asymptotic confidence sequences").

Members differ only in the mixing variance ``tau^2``. All functions take numpy arrays of any
(broadcastable) shape, so one call evaluates thousands of simulated experiments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from shadow.stats._validation import check_alpha, check_positive_int

# Below this the variance is treated as zero (identical models give exactly zero differences).
VARIANCE_FLOOR = 1e-18


class AlwaysValidMethod(ABC):
    """A normal-mixture sequential test at level ``alpha``, tuned for ``planned_n`` units."""

    name: ClassVar[str]

    def __init__(self, *, alpha: float, planned_n: int) -> None:
        self.alpha = check_alpha(alpha)
        self.planned_n = check_positive_int(planned_n, field="planned_n")

    @abstractmethod
    def mixing_variance(self, unit_variance: np.ndarray) -> np.ndarray:
        """``tau^2``, on the effect's scale, given the per-unit variance (the variance of
        one paired difference, or the sum of the two arms' variances)."""

    def _terms(
        self, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        v = np.maximum(np.asarray(estimate_variance, dtype=np.float64), VARIANCE_FLOOR)
        tau2 = np.maximum(self.mixing_variance(np.asarray(unit_variance)), VARIANCE_FLOOR)
        return v, tau2

    def log_likelihood_ratio(
        self, estimate: np.ndarray, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> np.ndarray:
        """``log Lambda`` of the mixture against ``effect = 0``."""
        v, tau2 = self._terms(estimate_variance, unit_variance)
        theta = np.asarray(estimate, dtype=np.float64)
        return np.asarray(0.5 * np.log(v / (v + tau2)) + theta**2 * tau2 / (2.0 * v * (v + tau2)))

    def p_value(
        self, estimate: np.ndarray, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> np.ndarray:
        """``min(1, 1/Lambda)`` at one look (take the running minimum over looks)."""
        log_lr = self.log_likelihood_ratio(estimate, estimate_variance, unit_variance)
        return np.asarray(np.exp(np.minimum(-log_lr, 0.0)))

    def half_width(self, estimate_variance: np.ndarray, unit_variance: np.ndarray) -> np.ndarray:
        """Half-width of the confidence sequence around the estimate at one look."""
        v, tau2 = self._terms(estimate_variance, unit_variance)
        return np.asarray(np.sqrt(v * (v + tau2) / tau2 * np.log((v + tau2) / (v * self.alpha**2))))


def optimal_mixing_constant(alpha: float) -> float:
    """``-2 log(alpha) + log(1 - 2 log(alpha))``: with ``tau^2 = sigma^2 * c / n*`` the
    boundary is (nearly) tightest at ``n = n*`` (Howard et al. 2021;
    Waudby-Smith et al. 2023, §3.1)."""
    return float(-2.0 * np.log(alpha) + np.log(-2.0 * np.log(alpha) + 1.0))
