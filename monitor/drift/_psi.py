"""Population stability index (numeric or categorical)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.drift._base import DriftMethod, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts, fill_zeros
from monitor.drift._noise import noise_floor, psi_rows
from monitor.drift._profile import ColumnKind, ColumnSummary, NumericSummary


class PopulationStability(DriftMethod):
    """``PSI = sum((r - c) * ln(r / c))`` over bins. Categorical columns, and numeric
    columns with at most 20 distinct reference values, are binned by value over the union
    of the reference's and the window's values (as Jensen-Shannon and chi-square bin
    them); other numeric columns use the bins fixed at build time from the reference
    deciles, the outer two open (so the reference shares come from the full reference
    column). Empty bins are floored as in evidently. Drift when PSI ``>= threshold``
    (default 0.1) and also over its sampling noise for the two sample sizes and bins
    (:mod:`monitor.drift._noise`; decile bins count the full reference column): with
    many categories, or small windows, unchanged traffic reaches any fixed cut-off (45 %
    of 100-row windows drifted over decile bins against a 1500-row reference).

    Decile bins merged a discrete column's values: a column of 0s and 1s has the edges 0
    and 1 and an open top bin, so 1s that became 7s, or a column always 0 in the
    reference that is now 1 on half the rows, scored PSI 3e-5 and 0 (no drift)."""

    name: ClassVar[MethodName] = "psi"
    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = False
    default_threshold: ClassVar[float] = 0.1

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        if counts is not None:  # categories, or the values of a discrete numeric column
            ref, cur = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
        else:
            assert isinstance(summary, NumericSummary)
            edges = np.asarray(summary.psi_edges)
            ref = np.asarray(summary.psi_shares)
            idx = np.searchsorted(edges, current.values, side="right")
            cur = np.bincount(idx, minlength=edges.size + 1) / current.values.size
        ref, cur = fill_zeros(ref), fill_zeros(cur)
        return float(np.sum((ref - cur) * np.log(ref / cur))), None

    def _noise_floor(self, summary: ColumnSummary, current: PreparedColumn) -> float:
        return noise_floor(
            *self._counts(summary, current),
            psi_rows,
            lambda scale: scale,
            threshold=self.threshold,
            alpha=self.alpha,
        )

    @staticmethod
    def _counts(summary: ColumnSummary, current: PreparedColumn) -> tuple[np.ndarray, np.ndarray]:
        """Counts per category or distinct value (over the union of the reference's and
        the window's), else per decile bin fixed at build time (the reference side from
        the full reference column's shares)."""
        counts = aligned_counts(summary, current)
        if counts is not None:
            return counts
        assert isinstance(summary, NumericSummary)
        edges = np.asarray(summary.psi_edges)
        idx = np.searchsorted(edges, current.values, side="right")
        cur = np.bincount(idx, minlength=edges.size + 1).astype(np.float64)
        return np.rint(np.asarray(summary.psi_shares) * summary.n), cur
