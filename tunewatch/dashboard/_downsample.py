"""Server-side downsampling: a year of hourly windows must not reach the browser whole."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

MAX_POINTS = 400
T = TypeVar("T")


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
