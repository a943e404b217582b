"""Jensen-Shannon distance (numeric or categorical)."""

from __future__ import annotations

from typing import ClassVar

from scipy.spatial import distance

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts, sturges_histograms
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary


class JensenShannon(DriftMethod):
    """Jensen-Shannon distance (natural log, so in ``[0, sqrt(ln 2)]``) between value
    frequencies: per category, per distinct value for numeric columns with at most 20
    distinct reference values, otherwise over Sturges histogram bins spanning both
    samples — evidently's binning. Drift when the distance is ``>= threshold`` (default
    0.1: evidently's default for categorical columns with more than 1000 reference
    rows)."""

    name: ClassVar[MethodName] = "jensenshannon"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = False
    default_threshold: ClassVar[float] = 0.1

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
