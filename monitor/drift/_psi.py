"""Population stability index (numeric or categorical)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts, fill_zeros
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary


class PopulationStability(DriftMethod):
    """``PSI = sum((r - c) * ln(r / c))`` over bins. Numeric columns use the bins fixed
    at build time from the reference deciles (so the reference shares come from the full
    reference column); categorical columns use the union of categories. Empty bins are
    floored as in evidently. Drift when PSI ``>= threshold`` (default 0.1)."""

    name: ClassVar[MethodName] = "psi"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = False
    default_threshold: ClassVar[float] = 0.1

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        if isinstance(summary, NumericSummary):
            edges = np.asarray(summary.psi_edges)
            ref = np.asarray(summary.psi_shares)
            idx = np.searchsorted(edges, current.values, side="right")
            cur = np.bincount(idx, minlength=edges.size + 1) / current.values.size
        else:
            counts = aligned_counts(summary, current)
            assert counts is not None
            ref, cur = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
        ref, cur = fill_zeros(ref), fill_zeros(cur)
        return float(np.sum((ref - cur) * np.log(ref / cur))), None
