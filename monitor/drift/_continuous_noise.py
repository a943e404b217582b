"""The sampling noise of the Wasserstein distance on a continuous column.

Two samples of one distribution are some distance apart, and on small windows that
passes evidently's fixed 0.1: configured on 100-row windows of unchanged traffic against
a 1500-row reference, 73 % of columns drifted. The floor is the distance's ``1 - alpha``
quantile between the reference sample and seeded bootstrap samples of it (drawn with
replacement: fresh samples of the reference's distribution).

The two sizes enter through the effective size ``m = n_ref * n_cur / (n_ref + n_cur)``:
the two-sample empirical process ``sqrt(m) (F_ref - F_cur)`` and the one-sample
``sqrt(m) (F_m - F)`` tend to the same Brownian bridge, so the distance between the
reference and a bootstrap sample of ``m`` values has the null law of the distance
between the reference and a window of ``n_cur``. For normal data against 1500 reference
rows the floor came within 0.5-3 % (above) of the two-sample quantile at 100-1000 rows;
subsamples of the window's size drawn without replacement leave out the reference's own
noise and the share of it they hold: 0.92 times the quantile at 100 rows, 0.45 at 1000.

The floor depends on the window's size only, so it is cached per reference summary. The
distance times ``sqrt(m)`` varied little with ``m`` (2.05-2.2 for normal data from 94 to
6667, 2.4 to 2.1 for log-normal from 90 to 1024), so floors are drawn at sizes on a grid
of powers of ``sqrt(2)`` up to :data:`LARGEST_SIZE` and scaled by ``sqrt(grid / m)``: a
column draws a handful of times however many window sizes it meets. Where an upper bound
on the asymptotic quantile is already under the threshold (at 0.1, from about 2700
effective rows for normal data; a 20,000-row window against a 10,000-value sample is
6667) nothing is drawn.

The distance and its floor are in units of :func:`distance_unit`, the reference's
standard deviation, so the verdict does not depend on the column's unit.

Jensen-Shannon and PSI bin a continuous column (Sturges bins, reference deciles) and
take the permutation floor over those bins' counts (:mod:`monitor.drift._noise`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from monitor.drift._noise import null_draws
from monitor.drift._profile import NumericSummary

DRAWS = 1000
"""Bootstrap samples behind a floor at alpha 0.05 or above (more below it, as
:func:`monitor.drift._noise.null_draws` says), as
:data:`monitor.drift._noise.PERMUTATIONS`. The
floor is their ``1 - alpha`` quantile, so the level it gives is alpha within about 0.7
percentage points (the binomial standard error of a 0.05 quantile over 1000 draws: 1.1
over 400, 1.5 over 200). With 400, seed 0's floors came out 3-5 % under the two-sample
quantile at 200-500 rows."""

LARGEST_SIZE = 512
"""The largest effective size drawn at; past it the floor is scaled as ``1 / sqrt(m)``
(about 0.1 there: past it the floor rarely matters at the default threshold). A floor
costs about ``DRAWS * size`` operations whatever the reference's size: about 5 ms at
size 90 and 30 ms at 512."""

SEED = 0
"""Seed of the bootstrap generator: a floor is a function of its inputs."""

CONSTANT_UNIT = 0.001
"""The unit of the distance when the reference is constant: evidently's floor on the
standard deviation (see :func:`distance_unit`)."""

_CELL_BUDGET = 2_000_000
"""Largest draws x size block held at once (memory bound)."""


@dataclass(eq=False)
class _ColumnNoise:
    """What a reference column's floors share: the prefix sums over the reference
    sample's gaps (in units of the distance) of ``gap`` and ``F_ref * gap``, the
    asymptotic mean of ``sqrt(m)`` times the distance, and the floors drawn so far."""

    size: int
    gap_sums: np.ndarray
    weighted_gap_sums: np.ndarray
    mean: float
    floors: dict[tuple[float, int], float] = field(default_factory=dict)


_COLUMNS: weakref.WeakKeyDictionary[NumericSummary, _ColumnNoise] = weakref.WeakKeyDictionary()
"""Per reference summary (held weakly: dropped with the profile)."""


def distance_unit(summary: NumericSummary) -> float:
    """What the Wasserstein distance is divided by: the reference's standard deviation,
    or :data:`CONSTANT_UNIT` when the reference is constant.

    evidently divides by ``max(std, 0.001)``, in the column's own unit: a column of std
    1e-5 (a rate, a probability) scored 1 % of its distance in standard deviations, so an
    8-sigma shift was 0.08, under the 0.1 threshold, and a rare-event score (about 1e-4)
    whose every value rose 60 % was 0.069: Wasserstein saw neither at any window size.
    Here the floor applies to a constant reference only, so for columns of std under
    0.001 the statistic is larger than evidently's (by ``0.001 / std``) and its verdict
    the one the same column gets in any other unit.

    A constant reference is told by its single distinct value, not by ``std == 0``: the
    standard deviation of 5,000 copies of 0.1 is 1.4e-17, rounding noise that would make
    any change an enormous distance. It has no scale of its own, so it keeps evidently's
    absolute unit (and its floor is 0: every bootstrap sample of a constant is that
    constant)."""
    constant = summary.value_counts is not None and len(summary.value_counts) <= 1
    if constant or not summary.std > 0.0:
        return CONSTANT_UNIT
    return summary.std


def effective_size(n_ref: int, n_cur: int) -> float:
    """``n_ref * n_cur / (n_ref + n_cur)``: the size whose one-sample noise matches the
    two-sample noise of these sizes."""
    return n_ref * n_cur / (n_ref + n_cur)


def grid_size(m: float) -> int:
    """The largest power of ``sqrt(2)`` (rounded down) at most ``m``, capped at
    :data:`LARGEST_SIZE`."""
    if m >= LARGEST_SIZE:
        return LARGEST_SIZE
    return max(1, int(2 ** (math.floor(2 * math.log2(max(m, 1.0))) / 2)))


def _column(summary: NumericSummary) -> _ColumnNoise:
    cached = _COLUMNS.get(summary)
    if cached is not None:
        return cached
    u = summary.sample
    # in units of the largest magnitude when the gaps could overflow (as the distance)
    scale = max(abs(float(u[0])), abs(float(u[-1])))
    scale = scale if scale > 1e150 else 1.0
    gaps = np.diff(u / scale) / (distance_unit(summary) / scale)
    cdf = np.arange(1, u.size) / u.size
    column = _ColumnNoise(
        size=int(u.size),
        gap_sums=np.concatenate([[0.0], np.cumsum(gaps)]),
        weighted_gap_sums=np.concatenate([[0.0], np.cumsum(cdf * gaps)]),
        mean=math.sqrt(2 / math.pi) * float(np.sum(np.sqrt(cdf * (1 - cdf)) * gaps)),
    )
    _COLUMNS[summary] = column
    return column


def asymptotic_bound(mean: float, m: float, alpha: float) -> float:
    """An upper bound on the floor's limit: the distance times ``sqrt(m)`` tends to
    ``int |B(F(x))| dx / std`` for a Brownian bridge ``B``, whose mean is ``mean`` and
    which, by the Borell-TIS inequality (its largest linear standard deviation is at most
    ``mean * sqrt(pi / 2)``), passes ``mean * (1 + sqrt(pi * ln(1 / alpha)))`` with
    probability at most ``alpha``. Against drawn quantiles it was 2.1-2.5 times them for
    normal, log-normal, exponential, Pareto and Poisson data, 1.85 for a bimodal mixture
    and 1.4 for Cauchy."""
    return mean * (1.0 + math.sqrt(math.pi * math.log(1.0 / alpha))) / math.sqrt(m)


def _distances(column: _ColumnNoise, picks: np.ndarray) -> np.ndarray:
    """The distance between the reference sample and each row of ``picks`` (sorted
    positions in the sample, one bootstrap sample a row), exactly, in ``O(size)`` a row.

    With ``g`` and ``w`` the prefix sums of ``gap`` and ``F_ref * gap``, between the
    ``k``-th and ``k+1``-th pick (positions ``p_k``, ``p_{k+1}``; ``p_0 = 0``,
    ``p_{size+1}`` the last) the sample's CDF is ``L_k = k / size`` while the
    reference's rises past it at ``c_k``, so the stretch adds ``L_k (g(c_k) - g(p_k)) -
    (w(c_k) - w(p_k)) + (w(p_{k+1}) - w(c_k)) - L_k (g(p_{k+1}) - g(c_k))``. Summed over
    ``k``, the ``j``-th pick's ``w`` counts twice and its ``g`` by ``L_j + L_{j-1}``."""
    rows, size = picks.shape
    n_ref = column.size
    g, w = column.gap_sums, column.weighted_gap_sums
    steps = np.arange(size + 1)
    level = steps / size
    starts = np.concatenate([np.zeros((rows, 1), dtype=np.int64), picks], axis=1)
    ends = np.concatenate([picks, np.full((rows, 1), n_ref - 1)], axis=1)
    # the first gap index i with F_ref = (i + 1) / n_ref >= k / size, within the stretch
    cross = np.minimum(np.maximum((steps * n_ref + size - 1) // size - 1, starts), ends)
    # einsum, not a BLAS matrix product: as fast on one core, and no thread pool to wake
    at_picks = 2 * w[picks].sum(axis=1) - np.einsum("ij,j->i", g[picks], (2 * steps[1:] - 1) / size)
    at_cross = 2 * (np.einsum("ij,j->i", g[cross], level) - w[cross].sum(axis=1))
    distances: np.ndarray = at_cross + at_picks + (w[-1] - g[-1])
    return distances


def _draw(column: _ColumnNoise, size: int, alpha: float) -> float:
    """The ``1 - alpha`` quantile of the distance between the reference sample and
    :data:`DRAWS` bootstrap samples of ``size`` values from it (more below alpha 0.05:
    :func:`~monitor.drift._noise.null_draws`). A sample's sorted positions are its
    sorted uniforms (normalised sums of exponential spacings) times the reference's
    size."""
    rng = np.random.default_rng(SEED)
    block = max(1, _CELL_BUDGET // (size + 1))
    draws = null_draws(alpha, DRAWS)
    values: list[np.ndarray] = []
    done = 0
    while done < draws:
        rows = min(block, draws - done)
        points = np.cumsum(rng.standard_exponential((rows, size + 1)), axis=1)
        uniform = points[:, :-1] / points[:, -1:]
        picks = np.minimum((uniform * column.size).astype(np.int64), column.size - 1)
        values.append(_distances(column, picks))
        done += rows
    return float(np.quantile(np.concatenate(values), 1.0 - alpha, method="higher"))


def wasserstein_floor(
    summary: NumericSummary, n_cur: int, *, threshold: float, alpha: float
) -> float:
    """The normalised Wasserstein distance that sampling noise alone reaches with
    probability ``alpha`` between ``summary``'s reference sample and a window of
    ``n_cur`` values. Where :func:`asymptotic_bound` is at most ``threshold`` it is
    returned as is (it cannot raise the cut-off)."""
    if summary.sample.size < 2 or n_cur < 1:
        return 0.0
    column = _column(summary)
    m = effective_size(column.size, n_cur)
    bound = asymptotic_bound(column.mean, m, alpha)
    if bound <= threshold:
        return bound
    size = grid_size(m)
    key = (alpha, size)
    floor = column.floors.get(key)
    if floor is None:
        floor = _draw(column, size, alpha)
        column.floors[key] = floor
    return floor * math.sqrt(size / m)
