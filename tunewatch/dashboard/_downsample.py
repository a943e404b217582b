"""Server-side downsampling: a year of hourly windows must not reach the browser whole.

Evenly spaced picks (:func:`downsample_indices`) suit series that change slowly (a
confidence sequence narrowing, a best-so-far curve); series where one window can matter
(a latency spike, an accuracy collapse) keep each bucket's extremes instead
(:func:`extreme_indices`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, TypeVar

import numpy as np

MAX_POINTS = 400
MAX_WINDOWS = 24 * 366  # a year of hourly evaluation windows: the pages' default range
T = TypeVar("T")
Side = Literal["both", "high", "low"]


def downsample_indices(n: int, max_points: int = MAX_POINTS, keep: Iterable[int] = ()) -> list[int]:
    """At most ``max_points`` evenly spaced indices into ``range(n)``, always the first and
    the last, plus every index in ``keep`` (e.g. the look that decided), sorted.

    ``keep`` may push the count past ``max_points`` by its own length.
    """
    if max_points < 2:
        raise ValueError(f"`max_points` must be at least 2, got {max_points}")
    extra = {i for i in keep if 0 <= i < n}
    if n <= max_points:
        return list(range(n))
    even = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))
    return sorted({int(i) for i in even} | extra)


def downsample(
    items: Sequence[T], max_points: int = MAX_POINTS, keep: Iterable[int] = ()
) -> list[T]:
    """The items at :func:`downsample_indices`."""
    return [items[i] for i in downsample_indices(len(items), max_points, keep)]


def buckets(n: int, max_buckets: int = MAX_POINTS) -> list[range]:
    """``range(n)`` cut into at most ``max_buckets`` consecutive, near-equal runs (for
    aggregating rather than picking, e.g. heatmap columns)."""
    if max_buckets < 1:
        raise ValueError(f"`max_buckets` must be at least 1, got {max_buckets}")
    if n <= max_buckets:
        return [range(i, i + 1) for i in range(n)]
    edges = np.round(np.linspace(0, n, max_buckets + 1)).astype(np.int64)
    return [range(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def extreme_indices(
    series: Sequence[tuple[Sequence[float | None], Side]], n: int, max_points: int = MAX_POINTS
) -> list[int]:
    """At most ``max_points`` indices into ``range(n)`` that keep every series' extremes,
    sorted: the first and the last index, and in each of a number of consecutive buckets,
    per series, the index of its highest value, its lowest or both (the series' ``Side``;
    the earliest on ties; missing values are skipped).

    Each series holds ``n`` values. The buckets are as many as fit: ``(max_points - 2) // 2``
    at first, fewer while the picked indices of several series overflow ``max_points``.
    When not even one bucket fits (a tiny ``max_points`` and many series), the indices are
    evenly spaced instead.
    """
    if max_points < 2:
        raise ValueError(f"`max_points` must be at least 2, got {max_points}")
    if n <= max_points:
        return list(range(n))
    columns = [
        (np.array([np.nan if v is None else v for v in values], dtype=np.float64), side)
        for values, side in series
    ]
    for values, _ in columns:
        if len(values) != n:
            raise ValueError(f"every series must hold `n` = {n} values, got {len(values)}")
    count = (max_points - 2) // 2
    while count >= 1:
        picked = _bucket_extremes(columns, n, count)
        if len(picked) <= max_points:
            return picked
        count = min(count - 1, max(1, count * (max_points - 2) // (len(picked) - 2)))
    return downsample_indices(n, max_points)


def _bucket_extremes(columns: Sequence[tuple[np.ndarray, Side]], n: int, count: int) -> list[int]:
    """The first and last index, and per bucket of ``count`` and per series the earliest
    index of its extreme(s); a bucket whose values are all missing adds nothing."""
    edges = np.round(np.linspace(0, n, count + 1)).astype(np.int64)
    starts = np.unique(edges[:-1])
    sizes = np.diff(np.append(starts, n))
    index = np.arange(n)
    picked = {0, n - 1}
    for values, side in columns:
        finite = np.where(np.isfinite(values), values, np.nan)
        extremes = []
        if side != "low":
            extremes.append(np.fmax.reduceat(finite, starts))  # fmax/fmin skip NaN
        if side != "high":
            extremes.append(np.fmin.reduceat(finite, starts))
        for per_bucket in extremes:
            extreme = np.repeat(per_bucket, sizes)
            at = np.minimum.reduceat(np.where(finite == extreme, index, n), starts)
            picked.update(int(i) for i in at if i < n)
    return sorted(picked)
