"""Pearson chi-square test of homogeneity of the reference and current counts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import stats

from monitor.drift._base import DiscreteTest, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts
from monitor.drift._profile import ColumnSummary


class ChiSquare(DiscreteTest):
    """Chi-square test that the reference and the current window are samples of one
    distribution: Pearson's test of homogeneity on the 2 x k table of their counts
    (categories absent from both dropped), without Yates' continuity correction.

    The reference is a sample too. evidently's goodness-of-fit form, the current counts
    against the reference shares taken as exact, ignores the reference's own sampling
    noise: on unchanged data with four categories and 500 rows on each side a 5 % test
    rejected 28 % of windows, and a value the reference happened not to hold was
    infinite drift (p = 0) after a single request. Without the correction the 2 x 2
    case is the two-proportion Z-test squared (the ``z`` method's p-value); Yates'
    correction would make it conservative, well under its level at these sizes.

    Applies to categorical columns and to numeric columns with at most 20 distinct
    reference values. Drift when ``p_value < threshold`` (default 0.05)."""

    name: ClassVar[MethodName] = "chisquare"

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        assert counts is not None
        ref, cur = counts
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:  # one category in all: nothing to tell apart
            return 0.0, 1.0
        result = stats.chi2_contingency(table, correction=False)
        return float(result.statistic), float(result.pvalue)
