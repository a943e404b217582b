"""Two-proportion Z-test for binary columns."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import stats

from monitor.drift._base import DiscreteTest, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts
from monitor.drift._profile import ColumnSummary


class ZTest(DiscreteTest):
    """Two-sided Z-test for the difference of two proportions: the share of the first
    value (in sorted order) against all others, as evidently does for columns with two
    distinct values and at most 1000 reference rows. Drift when ``p_value < threshold``
    (default 0.05)."""

    name: ClassVar[MethodName] = "z"

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        assert counts is not None
        ref, cur = counts
        n1, n2 = float(ref.sum()), float(cur.sum())
        p1, p2 = 1.0 - ref[0] / n1, 1.0 - cur[0] / n2
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        if pooled <= 0.0 or pooled >= 1.0:
            return 0.0, 1.0
        z = (p1 - p2) / np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
        return float(z), float(2.0 * stats.norm.sf(abs(z)))
