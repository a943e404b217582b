"""Aligned reference/current frequencies, shared by the discrete and binned methods."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.drift._base import PreparedColumn, reference_counts
from monitor.drift._profile import ColumnSummary, NumericSummary


def current_counts(current: PreparedColumn) -> dict[Any, int]:
    """Counts per value of the current column (computed for many-valued numerics)."""
    if current.counts is not None:
        return current.counts
    keys, counts = np.unique(current.values, return_counts=True)
    return {float(k): int(c) for k, c in zip(keys, counts, strict=True)}


def aligned_counts(
    summary: ColumnSummary, current: PreparedColumn
) -> tuple[np.ndarray, np.ndarray] | None:
    """Reference and current counts over the union of values, or ``None`` when the
    reference column is continuous."""
    ref = reference_counts(summary)
    if ref is None:
        return None
    cur = current_counts(current)
    keys = sorted(set(ref) | set(cur), key=str)
    return (
        np.array([ref.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cur.get(k, 0) for k in keys], dtype=np.float64),
    )


def sturges_counts(
    summary: NumericSummary, current: PreparedColumn
) -> tuple[np.ndarray, np.ndarray]:
    """Reference-sample and current counts over Sturges bins spanning both samples (the
    binning evidently uses for continuous columns), with the bin count taken from the
    full reference size rather than the sample's."""
    lo = min(float(summary.sample[0]), float(current.values[0]))
    hi = max(float(summary.sample[-1]), float(current.values[-1]))
    n_bins = int(np.ceil(np.log2(summary.n + current.n) + 1.0))
    if hi <= lo:
        hi = lo + 1.0
    if np.isfinite(hi - lo):
        edges = np.linspace(lo, hi, n_bins + 1)
    else:  # the span overflows: place the edges in units of the ends' magnitude
        scale = max(abs(lo), abs(hi))
        edges = np.linspace(lo / scale, hi / scale, n_bins + 1) * scale
        edges[0], edges[-1] = lo, hi
    ref = np.histogram(summary.sample, edges)[0].astype(np.float64)
    cur = np.histogram(current.values, edges)[0].astype(np.float64)
    return ref, cur


def sturges_histograms(
    summary: NumericSummary, current: PreparedColumn
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sturges_counts` as shares of each sample."""
    ref, cur = sturges_counts(summary, current)
    return ref / summary.sample.size, cur / current.values.size


def fill_zeros(shares: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """Replace empty bins by a small share so log-ratios stay finite (evidently's rule:
    ``1e-4``, or a millionth of the smallest share when that is below ``1e-4``)."""
    positive = shares[shares > 0]
    if positive.size == 0:
        return np.full_like(shares, floor)
    smallest = float(positive.min())
    fill = smallest / 1e6 if smallest <= floor else floor
    return np.where(shares > 0, shares, fill)
