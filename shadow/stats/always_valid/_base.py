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

# Variances are floored here: zero for identical models (every difference exactly zero).
# The floor is the smallest normal float, not a loss-scale constant: the statistic depends
# only on ``theta^2 / V`` and ``tau^2 / V``, so losses in units 1e-8 smaller must decide
# alike (an absolute floor of 1e-18 stopped a 17-sd effect deciding at that scale).
VARIANCE_FLOOR = float(np.finfo(np.float64).tiny)


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

    def _log_terms(
        self, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``log V`` and ``log(tau^2 / V)``, each variance floored at
        :data:`VARIANCE_FLOOR`: in logs, so no ratio over- or underflows at any scale."""
        v = np.maximum(np.asarray(estimate_variance, dtype=np.float64), VARIANCE_FLOOR)
        tau2 = np.maximum(self.mixing_variance(np.asarray(unit_variance)), VARIANCE_FLOOR)
        log_v = np.log(v)
        return log_v, np.log(tau2) - log_v

    def log_likelihood_ratio(
        self, estimate: np.ndarray, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> np.ndarray:
        """``log Lambda`` of the mixture against ``effect = 0``: with ``r = tau^2 / V`` and
        ``z^2 = theta^2 / V``, ``-log(1 + r) / 2 + z^2 r / (2 (1 + r))``."""
        log_v, log_r = self._log_terms(estimate_variance, unit_variance)
        theta = np.abs(np.asarray(estimate, dtype=np.float64))
        with np.errstate(divide="ignore", over="ignore"):  # theta = 0; z^2 past 1e308 is inf
            z2 = np.exp(2.0 * np.log(theta) - log_v)
        share = np.exp(-np.logaddexp(0.0, -log_r))  # r / (1 + r), the logistic of log r
        return np.asarray(-0.5 * np.logaddexp(0.0, log_r) + 0.5 * z2 * share)

    def p_value(
        self, estimate: np.ndarray, estimate_variance: np.ndarray, unit_variance: np.ndarray
    ) -> np.ndarray:
        """``min(1, 1/Lambda)`` at one look (take the running minimum over looks)."""
        log_lr = self.log_likelihood_ratio(estimate, estimate_variance, unit_variance)
        return np.asarray(np.exp(np.minimum(-log_lr, 0.0)))

    def half_width(self, estimate_variance: np.ndarray, unit_variance: np.ndarray) -> np.ndarray:
        """Half-width of the confidence sequence around the estimate at one look:
        ``sqrt(V (1 + 1/r) log((1 + r) / alpha^2))``."""
        log_v, log_r = self._log_terms(estimate_variance, unit_variance)
        scale = np.exp(0.5 * (log_v + np.logaddexp(0.0, -log_r)))
        return np.asarray(scale * np.sqrt(np.logaddexp(0.0, log_r) - 2.0 * np.log(self.alpha)))


def optimal_mixing_constant(alpha: float) -> float:
    """``-2 log(alpha) + log(1 - 2 log(alpha))``: with ``tau^2 = sigma^2 * c / n*`` the
    boundary is (nearly) tightest at ``n = n*`` (Howard et al. 2021;
    Waudby-Smith et al. 2023, §3.1)."""
    return float(-2.0 * np.log(alpha) + np.log(-2.0 * np.log(alpha) + 1.0))
