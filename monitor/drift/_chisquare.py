"""Pearson chi-square goodness-of-fit test of current counts against reference shares."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import stats

from monitor.drift._base import DiscreteTest, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts
from monitor.drift._profile import ColumnSummary


class ChiSquare(DiscreteTest):
    """Chi-square test of the current counts against the reference shares scaled to the
    current size (evidently's formulation). A value absent from the reference but seen
    now makes the statistic infinite (p = 0). Applies to categorical columns and to
    numeric columns with at most 20 distinct reference values. Drift when
    ``p_value < threshold`` (default 0.05)."""

    name: ClassVar[MethodName] = "chisquare"

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        assert counts is not None
        ref, obs = counts
        expected = ref * (obs.sum() / ref.sum())
        seen = expected > 0
        if np.any(obs[~seen] > 0):
            return float("inf"), 0.0
        dof = int(seen.sum()) - 1
        statistic = float(np.sum((obs[seen] - expected[seen]) ** 2 / expected[seen]))
        return statistic, float(stats.chi2.sf(statistic, dof))
