"""Jensen-Shannon distance (numeric or categorical)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.spatial import distance

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts, sturges_counts, sturges_histograms
from monitor.drift._noise import jensen_shannon_rows, noise_floor
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary

LARGEST = math.sqrt(math.log(2))
"""The largest Jensen-Shannon distance with natural logs (disjoint supports): 0.8326."""


class JensenShannon(DriftMethod):
    """Jensen-Shannon distance (natural log, so in ``[0, sqrt(ln 2)]``) between value
    frequencies: per category, per distinct value for numeric columns with at most 20
    distinct reference values, otherwise over Sturges histogram bins spanning both
    samples — evidently's binning. Drift when the distance is ``>= threshold`` (default
    0.1: evidently's default for categorical columns with more than 1000 reference
    rows) and also over its sampling noise: the distance's ``1 - alpha`` quantile when
    the pooled counts (per category, distinct value or bin) are split at random into
    samples of the two sizes (:mod:`monitor.drift._noise`).

    The noise grows with the number of categories: 100 classes of a multiclass model's
    prediction at 1100 rows measured a median distance of 0.119 on unchanged traffic,
    and 98 of 100 such windows drifted at the fixed 0.1. It grows as the window shrinks:
    configured on continuous columns, 81 % of 100-row windows of unchanged traffic
    drifted against a 1500-row reference before the bins had a floor too.

    A threshold must be under the largest distance, sqrt(ln 2): at 0.9 a column whose
    every value changed (all "a" to all "b") scored 0.8326 and did not drift."""

    name: ClassVar[MethodName] = "jensenshannon"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = False
    default_threshold: ClassVar[float] = 0.1

    @classmethod
    def _threshold_problem(cls, threshold: float) -> str | None:
        if threshold < LARGEST:
            return None
        return (
            f"`threshold` of {cls.name} must be in (0, sqrt(ln 2) = {LARGEST:.4f}), "
            f"got {threshold}: the Jensen-Shannon distance (natural log) is at most "
            "sqrt(ln 2), so the column could never drift"
        )

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        if counts is None:
            assert isinstance(summary, NumericSummary)
            ref, cur = sturges_histograms(summary, current)
        else:
            ref, cur = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
        return float(distance.jensenshannon(ref, cur)), None

    def _noise_floor(self, summary: ColumnSummary, current: PreparedColumn) -> float:
        return noise_floor(
            *self._counts(summary, current),
            jensen_shannon_rows,
            lambda scale: float(np.sqrt(scale / 8)),
            threshold=self.threshold,
            alpha=self.alpha,
        )

    @staticmethod
    def _counts(summary: ColumnSummary, current: PreparedColumn) -> tuple[np.ndarray, np.ndarray]:
        """Counts per category or distinct value, else per Sturges bin (the reference
        side counting the reference sample)."""
        counts = aligned_counts(summary, current)
        if counts is not None:
            return counts
        assert isinstance(summary, NumericSummary)
        return sturges_counts(summary, current)
