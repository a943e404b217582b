"""Two-sample Kolmogorov-Smirnov test (numeric columns)."""

from __future__ import annotations

from typing import ClassVar

from scipy import stats

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary

_EXACT_MAX_PAIRS = 1_000_000


class KolmogorovSmirnov(DriftMethod):
    """Two-sided KS test of the reference sample against the current values; drift when
    ``p_value <= threshold`` (evidently's default for numeric columns with at most 1000
    reference rows). The exact distribution is used for small samples, the asymptotic
    one beyond ``n_ref * n_cur > 10**6``."""

    name: ClassVar[MethodName] = "ks"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num"})
    returns_p_value: ClassVar[bool] = True
    default_threshold: ClassVar[float] = 0.05

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        assert isinstance(summary, NumericSummary)
        ref = summary.sample
        method = "exact" if ref.size * current.values.size <= _EXACT_MAX_PAIRS else "asymp"
        res = stats.ks_2samp(ref, current.values, method=method)
        return float(res.statistic), float(res.pvalue)

    def _is_drift(self, statistic: float, p_value: float | None, threshold: float) -> bool:
        return p_value is not None and p_value <= threshold
