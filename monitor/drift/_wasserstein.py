"""Wasserstein (earth mover's) distance normalised by the reference standard deviation."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._continuous_noise import distance_unit, wasserstein_floor
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance between two *sorted* samples (as
    :func:`scipy.stats.wasserstein_distance`, without re-sorting)."""
    both = np.concatenate([u, v])
    both.sort(kind="mergesort")
    deltas = np.diff(both)
    u_cdf = np.searchsorted(u, both[:-1], side="right") / u.size
    v_cdf = np.searchsorted(v, both[:-1], side="right") / v.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


class Wasserstein(DriftMethod):
    """``W1(reference, current) / std_ref`` (the standard deviation is the full
    reference column's; the distance uses the reference sample). Drift when the distance
    is ``>= threshold`` (default 0.1: evidently's default for numeric columns with more
    than 1000 reference rows) and over its sampling noise: the distance's ``1 - alpha``
    quantile between the reference sample and bootstrap samples of it of the two
    samples' effective size (:mod:`monitor.drift._continuous_noise`). Configured on
    100-row windows against a 1500-row reference, 73 % of unchanged columns drifted at
    the fixed 0.1.

    evidently divides by ``max(std_ref, 0.001)``: for a column of std under 0.001 this
    statistic is evidently's times ``0.001 / std_ref``, and its verdict the one the same
    column gets in any unit (at std 1e-5 an 8-sigma shift scored 0.08 and did not
    drift). A constant reference keeps evidently's 0.001
    (:func:`~monitor.drift._continuous_noise.distance_unit`)."""

    name: ClassVar[MethodName] = "wasserstein"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num"})
    returns_p_value: ClassVar[bool] = False
    default_threshold: ClassVar[float] = 0.1

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        assert isinstance(summary, NumericSummary)
        u, v = summary.sample, current.values
        # in units of the largest magnitude when the gaps between values could overflow
        scale = max(abs(float(u[0])), abs(float(u[-1])), abs(float(v[0])), abs(float(v[-1])))
        if scale <= 1e150:
            scale = 1.0
        norm = distance_unit(summary) / scale
        return wasserstein_sorted(u / scale, v / scale) / norm, None

    def _noise_floor(self, summary: ColumnSummary, current: PreparedColumn) -> float:
        assert isinstance(summary, NumericSummary)
        return wasserstein_floor(summary, current.n, threshold=self.threshold, alpha=self.alpha)
