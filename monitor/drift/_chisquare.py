"""Pearson chi-square goodness-of-fit test of current counts against reference shares."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import stats

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts
from monitor.drift._profile import ColumnKind, ColumnSummary


class ChiSquare(DriftMethod):
    """Chi-square test of the current counts against the reference shares scaled to the
    current size (evidently's formulation). A value absent from the reference but seen
    now makes the statistic infinite (p = 0). Applies to categorical columns and to
    numeric columns with at most 20 distinct reference values. Drift when
    ``p_value < threshold`` (default 0.05)."""

    name: ClassVar[MethodName] = "chisquare"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = True
    default_threshold: ClassVar[float] = 0.05

    def _degenerate(
        self, summary: ColumnSummary, current: PreparedColumn, min_rows: int
    ) -> str | None:
        if summary.kind == "num" and getattr(summary, "value_counts", None) is None:
            return "chisquare needs a discrete column (at most 20 distinct reference values)"
        return super()._degenerate(summary, current, min_rows)

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
