"""Drift methods by name and evidently's sample-size-aware default choice."""

from __future__ import annotations

from monitor.drift._base import DriftMethod, PreparedColumn, n_distinct
from monitor.drift._chisquare import ChiSquare
from monitor.drift._jensenshannon import JensenShannon
from monitor.drift._ks import KolmogorovSmirnov
from monitor.drift._profile import ColumnSummary
from monitor.drift._psi import PopulationStability
from monitor.drift._wasserstein import Wasserstein
from monitor.drift._ztest import ZTest

METHODS: dict[str, type[DriftMethod]] = {
    cls.name: cls
    for cls in (
        KolmogorovSmirnov,
        PopulationStability,
        Wasserstein,
        JensenShannon,
        ChiSquare,
        ZTest,
    )
}
"""Every drift method, by its config name."""

SMALL_SAMPLE_ROWS = 1000
"""At or below this many rows (in the reference or the current window) p-value tests are
picked, above it distances."""


def default_method(summary: ColumnSummary, current: PreparedColumn) -> type[DriftMethod]:
    """evidently 0.7's default, judged by the smaller sample rather than the reference
    alone: with at most 1000 rows, KS for numeric columns with more than 5 distinct
    values, else chi-square (more than 2 values; a two-sample test of homogeneity where
    evidently's is goodness-of-fit) or the Z-test (binary); with more,
    Wasserstein for numeric columns with more than 5 distinct values, else
    Jensen-Shannon. Distinct values are counted over reference and current.

    A distance's sampling noise is set by the smaller sample: against a large reference,
    windows of a few hundred rows of unchanged traffic measure distances around
    evidently's 0.1 threshold, and 94 % of 100-row windows raised dataset drift
    (tests/monitor/test_monitor_drift_detector.py). Distances now also pass their noise
    floor (so a configured one holds its level on small windows), but there the floor,
    not the distance's threshold, sets the cut-off: the p-value tests stay the choice."""
    distinct = n_distinct(summary, current)
    discrete = summary.kind == "cat" or (distinct is not None and distinct <= 5)
    if min(summary.n, current.n) <= SMALL_SAMPLE_ROWS:
        if not discrete:
            return KolmogorovSmirnov
        return ChiSquare if distinct is None or distinct > 2 else ZTest
    return JensenShannon if discrete else Wasserstein
