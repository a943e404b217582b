"""Two-proportion Z-test for binary columns."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import stats

from monitor.drift._base import ColumnDrift, DiscreteTest, MethodName, PreparedColumn, n_distinct
from monitor.drift._chisquare import ChiSquare, exact_p_value
from monitor.drift._frequencies import aligned_counts
from monitor.drift._noise import sparse
from monitor.drift._profile import ColumnSummary


class ZTest(DiscreteTest):
    """Two-sided Z-test for the difference of two proportions, for columns with two
    distinct values over reference and current: the share of one value against the
    other's (the first in sorted order, as evidently; with two values the choice only
    flips the sign of ``z``). Drift when ``p_value < threshold`` (default 0.05).

    With more than two distinct values the two proportions no longer describe the column,
    and the column is tested by :class:`~monitor.drift.ChiSquare` at the same threshold;
    the verdict's ``method`` is then ``"chisquare"`` (its ``statistic`` chi-square's).
    evidently, like this test before, compares the first value against all the others:
    a 0/1 flag configured with ``z`` whose every 1 became a 2 kept the share of 0 and was
    p = 0.86, no drift (chi-square: p = 6e-163). Insufficient data would have left the
    column out of the dataset's share when it changed most. On two values the Z-test is
    chi-square's square root (same p-value), so the fallback keeps the level.

    When a cell of the 2 x 2 table is expected fewer than 5 times the p-value is Fisher's
    exact test's (two-sided; ``statistic`` stays ``z``), as chi-square's is: the normal
    approximation called a flag never set in 5000 reference rows and set once in a
    100-row window p = 1.5e-12 (Fisher: 0.0196, the chance that the one set row falls in
    the window), and ten flags set on 0.1 % of rows raised dataset drift under
    ``bonferroni`` in 35 % of unchanged 100-row windows. ``seed`` seeds chi-square's
    exact test in the fallback."""

    name: ClassVar[MethodName] = "z"

    def test_prepared(
        self,
        summary: ColumnSummary,
        current: PreparedColumn,
        *,
        column: str = "",
        min_rows: int = 30,
    ) -> ColumnDrift:
        """As :meth:`DriftMethod.test_prepared`; chi-square's verdict on more than two
        distinct values (insufficient data is reported under ``z``)."""
        distinct = n_distinct(summary, current)
        many = distinct is None or distinct > 2
        if many and self._degenerate(summary, current, min_rows) is None:
            chisquare = ChiSquare(threshold=self.threshold, alpha=self.alpha, seed=self.seed)
            return chisquare.test_prepared(summary, current, column=column, min_rows=min_rows)
        return super().test_prepared(summary, current, column=column, min_rows=min_rows)

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
        if sparse(ref, cur):
            return float(z), exact_p_value(np.vstack([ref, cur]))
        return float(z), float(2.0 * stats.norm.sf(abs(z)))
