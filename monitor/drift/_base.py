"""The drift-method interface and the per-column result.

A drift method compares one column of the current window with its
:class:`~monitor.drift.ReferenceProfile` summary. Methods are either *tests* (they
return a p-value; drift when it falls below the threshold) or *distances* (no p-value;
drift when the distance reaches the threshold). Degenerate inputs never raise: they
give ``status="insufficient_data"`` with a reason.

A distance drifts only when it also exceeds what sampling noise alone gives for the two
sample sizes at level ``alpha``: over counts (categories, the values of a discrete
numeric column, or the bins of a continuous one) by random splits of the pooled counts
(:mod:`monitor.drift._noise`), and for Wasserstein by bootstrap samples of the reference
(:mod:`monitor.drift._continuous_noise`). A fixed cut-off drifted on unchanged traffic
once there were many categories, or once the window was small: configured distances on
continuous columns drifted on 43-81 % of unchanged 100-row windows against a 1500-row
reference.

The floor is the null draws' ``1 - alpha`` quantile, so a distance must exceed it, not
only reach it: where the draws tie, reaching the floor is what sampling noise gives in
well over ``alpha`` of draws. On a column of distinct values (ids, free text) every split
is disjoint, each draw is Jensen-Shannon's largest value, sqrt(ln 2), and so is the
observed distance: counted as drift at the floor, 29 of 30 random splits of one set of
ids (5000 and 3000 rows) drifted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from monitor._errors import DriftError
from monitor.drift._profile import (
    DISCRETE_MAX_VALUES,
    CategoricalSummary,
    ColumnKind,
    ColumnSummary,
    category_counts,
    discrete_counts,
    numeric_values,
)

DriftStatus = Literal["ok", "drift", "insufficient_data"]
MethodName = Literal["ks", "psi", "wasserstein", "jensenshannon", "chisquare", "z"]

TIE_TOLERANCE = 1e-9
"""Relative margin by which a distance must exceed its noise floor: the two are computed
by different code (a library's distance, the vectorised null draws), so a distance equal
to its floor may come out a few units in the last place over it."""


@dataclass(frozen=True, kw_only=True)
class ColumnDrift:
    """Verdict for one column. ``statistic`` is the test statistic (KS ``D``,
    chi-square, ``z``) with its ``p_value`` for tests, or the distance for distance
    methods (``p_value`` is ``None``); both are ``None`` when the data were
    insufficient, and ``reason`` says why. ``n_ref``/``n_cur`` count non-missing values."""

    column: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    status: DriftStatus
    reason: str | None
    n_ref: int
    n_cur: int


@dataclass(frozen=True, kw_only=True)
class ColumnDriftConfig:
    """Per-column override: which method, and its threshold (``None``: the method's
    default — 0.05 for p-value tests, 0.1 for distances)."""

    method: MethodName
    threshold: float | None = None

    def __post_init__(self) -> None:
        from monitor.drift._registry import METHODS

        if self.method not in METHODS:
            raise DriftError(
                f"`method` must be one of {', '.join(sorted(METHODS))}, got {self.method!r}"
            )
        if self.threshold is not None and not (self.threshold > 0 and np.isfinite(self.threshold)):
            raise DriftError(f"`threshold` must be a positive finite number, got {self.threshold}")


@dataclass(frozen=True, eq=False)
class PreparedColumn:
    """The current window's values of one column, cleaned once and shared by methods.

    Numeric columns: ``values`` sorted finite float64 and ``counts`` per distinct value
    when there are few. Categorical columns: ``counts`` per category and empty
    ``values``."""

    n: int
    n_missing: int
    values: np.ndarray
    counts: dict[Any, int] | None


def prepare_current(summary: ColumnSummary, current: Any) -> PreparedColumn:
    """Clean a current column (drop missing/non-finite values) for ``summary``'s kind."""
    total = int(np.shape(current)[0]) if np.ndim(current) else 0
    if isinstance(summary, CategoricalSummary):
        cat_counts = category_counts(current)
        n = sum(cat_counts.values())
        return PreparedColumn(n, total - n, np.empty(0), dict(cat_counts))
    values = np.sort(numeric_values(current))
    num_counts = discrete_counts(values, DISCRETE_MAX_VALUES)
    return PreparedColumn(int(values.size), total - int(values.size), values, num_counts)


def reference_counts(summary: ColumnSummary) -> dict[Any, int] | None:
    """Counts per category (or per distinct numeric value), ``None`` for continuous."""
    if isinstance(summary, CategoricalSummary):
        return dict(summary.counts)
    return None if summary.value_counts is None else dict(summary.value_counts)


def n_distinct(summary: ColumnSummary, current: PreparedColumn) -> int | None:
    """Distinct values over reference and current, ``None`` when there are many."""
    ref = reference_counts(summary)
    if ref is None or current.counts is None:
        return None
    union = set(ref) | set(current.counts)
    return None if len(union) > DISCRETE_MAX_VALUES else len(union)


class DriftMethod(ABC):
    """One per-column drift method with its threshold.

    ``alpha`` is the level of a distance's sampling-noise floor (see
    :meth:`_noise_floor`; a multiple-testing rule lowers it to its share of the family's
    level, :meth:`at_level`); p-value tests do not use it."""

    name: ClassVar[MethodName]
    kinds: ClassVar[frozenset[ColumnKind]]
    """Column kinds the method accepts."""
    returns_p_value: ClassVar[bool]
    default_threshold: ClassVar[float]

    def __init__(self, *, threshold: float | None = None, alpha: float = 0.05) -> None:
        threshold = self.default_threshold if threshold is None else float(threshold)
        if not 0.0 < alpha < 1.0:
            raise DriftError(f"`alpha` must be in (0, 1), got {alpha}")
        if not (threshold > 0 and np.isfinite(threshold)):
            raise DriftError(f"`threshold` must be a positive finite number, got {threshold}")
        if self.returns_p_value and threshold >= 1:
            raise DriftError(f"`threshold` of a p-value test must be in (0, 1), got {threshold}")
        problem = self._threshold_problem(threshold)
        if problem is not None:
            raise DriftError(problem)
        self.threshold = threshold
        self.alpha = alpha

    @classmethod
    def _threshold_problem(cls, threshold: float) -> str | None:
        """Why a positive finite ``threshold`` cannot serve this method (a distance's
        largest value at or under it: the column could never drift), else ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"

    def at_level(self, alpha: float) -> DriftMethod:
        """This method, its threshold kept, with its noise floor at level ``alpha`` (a
        multiple-testing rule's share of its family's level)."""
        return type(self)(threshold=self.threshold, alpha=alpha)

    def test(
        self, summary: ColumnSummary, current: Any, *, column: str = "", min_rows: int = 30
    ) -> ColumnDrift:
        """Compare raw ``current`` values (array or Series) with the reference summary."""
        return self.test_prepared(
            summary, prepare_current(summary, current), column=column, min_rows=min_rows
        )

    def test_prepared(
        self,
        summary: ColumnSummary,
        current: PreparedColumn,
        *,
        column: str = "",
        min_rows: int = 30,
    ) -> ColumnDrift:
        """Like :meth:`test` for a column already cleaned by :func:`prepare_current`."""
        reason = self._degenerate(summary, current, min_rows)
        if reason is None and summary.kind not in self.kinds:
            reason = f"method {self.name!r} does not apply to {summary.kind!r} columns"
        if reason is not None:
            return self._result(column, summary, current, None, None, reason, self.threshold)
        statistic, p_value = self._compute(summary, current)
        if p_value is not None or statistic < self.threshold:
            return self._result(column, summary, current, statistic, p_value, None, self.threshold)
        floor = self._noise_floor(summary, current)
        if floor < self.threshold:
            return self._result(column, summary, current, statistic, None, None, self.threshold)
        drifted = statistic > floor * (1.0 + TIE_TOLERANCE)
        return self._result(column, summary, current, statistic, None, None, floor, drifted=drifted)

    @abstractmethod
    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        """``(statistic, p_value)``; called only on non-degenerate inputs."""

    def _noise_floor(self, summary: ColumnSummary, current: PreparedColumn) -> float:
        """The distance sampling noise alone exceeds with probability at most ``alpha``
        for these samples (its ``1 - alpha`` quantile); a distance drifts when it
        reaches ``threshold`` and exceeds this (the verdict's ``threshold`` is the
        larger). Asked only once the distance reached ``threshold``; 0 unless a method
        says otherwise (every distance method does)."""
        return 0.0

    def _is_drift(self, statistic: float, p_value: float | None, threshold: float) -> bool:
        if p_value is not None:
            return p_value < threshold
        return statistic >= threshold

    def _degenerate(
        self, summary: ColumnSummary, current: PreparedColumn, min_rows: int
    ) -> str | None:
        if current.n == 0:
            return "current window has no non-missing values"
        if summary.n < min_rows:
            return f"reference has {summary.n} non-missing values, fewer than min_rows={min_rows}"
        if current.n < min_rows:
            return (
                f"current window has {current.n} non-missing values, fewer than min_rows={min_rows}"
            )
        if n_distinct(summary, current) == 1:
            return "column is constant (one value in reference and current)"
        return None

    def _result(
        self,
        column: str,
        summary: ColumnSummary,
        current: PreparedColumn,
        statistic: float | None,
        p_value: float | None,
        reason: str | None,
        threshold: float,
        *,
        drifted: bool | None = None,
    ) -> ColumnDrift:
        """The verdict; ``drifted`` (when given) overrides :meth:`_is_drift`."""
        status: DriftStatus = "insufficient_data"
        if statistic is None:
            drifted = False
        else:
            if drifted is None:
                drifted = bool(self._is_drift(statistic, p_value, threshold))
            status = "drift" if drifted else "ok"
        return ColumnDrift(
            column=column,
            method=self.name,
            statistic=statistic,
            p_value=p_value,
            threshold=threshold,
            drifted=drifted,
            status=status,
            reason=reason,
            n_ref=summary.n,
            n_cur=current.n,
        )


class DiscreteTest(DriftMethod):
    """A p-value test on counts (chi-square, Z-test): categorical columns, and numeric
    columns with at most 20 distinct reference values. Drift when ``p_value < threshold``
    (default 0.05)."""

    kinds: ClassVar[frozenset[ColumnKind]] = frozenset({"num", "cat"})
    returns_p_value: ClassVar[bool] = True
    default_threshold: ClassVar[float] = 0.05

    def __init__(
        self, *, threshold: float | None = None, alpha: float = 0.05, seed: int = 0
    ) -> None:
        super().__init__(threshold=threshold, alpha=alpha)
        self.seed = seed  # of the exact test's Monte Carlo draws, where it needs them

    def at_level(self, alpha: float) -> DriftMethod:
        """As :meth:`DriftMethod.at_level`, the seed kept."""
        return type(self)(threshold=self.threshold, alpha=alpha, seed=self.seed)

    def _degenerate(
        self, summary: ColumnSummary, current: PreparedColumn, min_rows: int
    ) -> str | None:
        if summary.kind == "num" and getattr(summary, "value_counts", None) is None:
            return f"{self.name} needs a discrete column (at most 20 distinct reference values)"
        return super()._degenerate(summary, current, min_rows)
