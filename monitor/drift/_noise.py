"""The sampling noise of a distance over counts: how far apart two samples of one
distribution land by chance.

A distance between category shares grows with the number of categories even when nothing
changed: two samples of 100 classes, 5000 and 1100 rows, sit at a Jensen-Shannon distance
of about 0.12, over evidently's fixed 0.1. The noise floor is the distance's ``1 - alpha``
quantile when the pooled counts are split at random into samples of the two sizes (a
seeded permutation estimate: the current counts are multivariate-hypergeometric draws from
the pooled counts). Where every category is expected at least 5 times in the smaller
sample and the chi-square approximation puts the quantile under half the threshold, the
permutations are skipped: the floor cannot matter there.

The approximation: for small differences ``delta`` between shares, Jensen-Shannon
divergence is about ``sum(delta**2 / m) / 8`` and PSI about ``sum(delta**2 / m)``, while
Pearson's two-sample statistic is ``n_ref * n_cur / N * sum(delta**2 / m)``, chi-square
with ``K - 1`` degrees of freedom under no change (the G-test relation,
``G = 2 N JSD`` with mixture weights ``n_i / N``, gives the same scale)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special, stats

PERMUTATIONS = 1000
"""Random splits of the pooled counts behind a noise floor at alpha 0.05 or above (more
below it: :func:`null_draws`); fewer (down to :data:`MIN_PERMUTATIONS`) past
:data:`DRAW_LIMIT` category draws in all."""

MIN_PERMUTATIONS = 200

TAIL_DRAWS = 20
"""Null draws expected beyond a floor's ``1 - alpha`` quantile below alpha 0.02 (at or
above it :data:`PERMUTATIONS` or :data:`~monitor.drift._continuous_noise.DRAWS`, 1000,
put 20 or more there). A multiple-testing rule's ``alpha / m`` takes more draws
(:func:`null_draws`): at 0.0005, 1000 draws' quantile is their largest, and the largest
of 1000 permutations of a 10-bin Jensen-Shannon sat 3 % under the quantile of 20,000."""

MAX_DRAWS = 20_000
"""At most this many null draws behind a floor: 20 beyond the quantile down to alpha
0.001 (50 columns under ``bonferroni`` at 0.05), 10 at 0.0005. 4,000 permutations of
10 bins took 8 ms and 20,000 40 ms; 4,000 Wasserstein bootstrap samples of 512 values
about 0.15 s and 20,000 0.75 s, once a reference column and window size (cached)."""

DRAW_LIMIT = 5_000_000
"""Permutations x categories drawn per floor at most (while above
:data:`MIN_PERMUTATIONS`): about half a second; a 20,000-category column took 2 s at
1000 permutations."""

MISS = 1e-4
"""How unlikely an early stop of :func:`permutation_floor` may be to hide a floor over
the threshold."""

MIN_EXPECTED = 5.0
"""A category expected fewer times than this in the smaller sample is sparse: the
chi-square approximation is not trusted there (Cochran's rule)."""

_DRAW_BUDGET = 4_000_000
"""Largest permutations x categories block drawn at once (memory bound)."""

ITEM_DRAWS_MAX_ROWS = 2_000_000
"""Pooled rows up to which :func:`draw_splits` may draw a split row by row (numpy's
``"count"`` method holds one integer per pooled row)."""

CountDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Row-wise distance between reference and current counts (2-D arrays, one draw a row)."""


def null_draws(alpha: float, least: int) -> int:
    """Null draws behind a ``1 - alpha`` quantile: ``least``, or enough for about
    :data:`TAIL_DRAWS` beyond the quantile, at most :data:`MAX_DRAWS`."""
    return max(least, min(MAX_DRAWS, math.ceil(TAIL_DRAWS / alpha)))


def sparse(ref: np.ndarray, cur: np.ndarray) -> bool:
    """Whether some category is expected fewer than :data:`MIN_EXPECTED` times in the
    smaller sample under no change."""
    total = ref + cur
    return bool(np.any(total * min(ref.sum(), cur.sum()) / total.sum() < MIN_EXPECTED))


def draw_splits(rng: np.random.Generator, pooled: np.ndarray, n_cur: int, size: int) -> np.ndarray:
    """``size`` random splits of the ``pooled`` integer counts: the current sample's
    counts (one split a row) when ``n_cur`` of the pooled rows are drawn without
    replacement, multivariate-hypergeometric draws.

    The smaller side of the split is drawn, row by row (numpy's ``"count"`` method, time
    growing with the rows drawn) where it holds fewer than 4 rows a category, else
    category by category (``"marginals"``, time growing with the categories, about
    0.2 us each). 1000 categories against a 1000-row window drew 5-10 times faster row by
    row, a column of 8000 distinct ids and a 3000-row window 20 times."""
    total = int(pooled.sum())
    smaller = min(n_cur, total - n_cur)
    by_row = smaller < 4 * pooled.size and total <= ITEM_DRAWS_MAX_ROWS
    drawn = rng.multivariate_hypergeometric(
        pooled, smaller, size=size, method="count" if by_row else "marginals"
    )
    return drawn if smaller == n_cur else pooled - drawn


def chi2_scale(categories: int, n_ref: float, n_cur: float, alpha: float) -> float:
    """``sum(delta**2 / m)``'s ``1 - alpha`` quantile under no change, by the chi-square
    approximation: ``chi2(K - 1).ppf(1 - alpha) * (n_ref + n_cur) / (n_ref * n_cur)``."""
    quantile = float(stats.chi2.ppf(1.0 - alpha, max(categories - 1, 1)))
    return quantile * (n_ref + n_cur) / (n_ref * n_cur)


def permutation_floor(
    ref: np.ndarray,
    cur: np.ndarray,
    distance: CountDistance,
    *,
    alpha: float,
    seed: int = 0,
    threshold: float | None = None,
) -> float:
    """The ``1 - alpha`` quantile of ``distance`` over :data:`PERMUTATIONS` random splits
    of the pooled counts into samples of the reference's and the window's sizes (more
    below alpha 0.05: :func:`null_draws`).

    With ``threshold``, the first ``log(MISS) / log(1 - alpha)`` splits (180 at alpha
    0.05) end the estimate when none of them reaches it: a quantile over the rest at or
    over ``threshold`` would have missed that many times in a row with probability under
    :data:`MISS`, and a floor under ``threshold`` cannot raise the cut-off. A drifted
    continuous column binned for Jensen-Shannon (sparse tail bins) drew all 1000 splits
    on every 20,000-row window, 5 ms of a check."""
    pooled = np.rint(ref + cur).astype(np.int64)
    n_cur = int(round(float(cur.sum())))
    rng = np.random.default_rng(seed)
    runs = min(null_draws(alpha, PERMUTATIONS), max(MIN_PERMUTATIONS, DRAW_LIMIT // pooled.size))
    block = max(1, _DRAW_BUDGET // pooled.size)
    early = runs if threshold is None else min(runs, math.ceil(math.log(MISS) / math.log1p(-alpha)))
    values: list[np.ndarray] = []
    done = 0
    while done < runs:
        size = min(block, (early if done < early else runs) - done)
        drawn = draw_splits(rng, pooled, n_cur, size)
        values.append(distance((pooled - drawn).astype(np.float64), drawn.astype(np.float64)))
        done += size
        if done == early and threshold is not None and max(v.max() for v in values) < threshold:
            break
    return float(np.quantile(np.concatenate(values), 1.0 - alpha, method="higher"))


def noise_floor(
    ref: np.ndarray,
    cur: np.ndarray,
    distance: CountDistance,
    approximate: Callable[[float], float],
    *,
    threshold: float,
    alpha: float,
) -> float:
    """The distance sampling noise alone reaches with probability ``alpha`` for these
    counts' sizes and categories. ``approximate`` maps :func:`chi2_scale` to the
    distance's scale; where no category is sparse and that is under half ``threshold``
    it is returned as is (it cannot raise the cut-off), else the permutation estimate."""
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.size < 2:
        return 0.0
    approx = approximate(chi2_scale(ref.size, float(ref.sum()), float(cur.sum()), alpha))
    if approx <= threshold / 2 and not sparse(ref, cur):
        return approx
    return permutation_floor(ref, cur, distance, alpha=alpha, threshold=threshold)


def _shares(counts: np.ndarray) -> np.ndarray:
    return np.asarray(counts / counts.sum(axis=1, keepdims=True), dtype=np.float64)


def jensen_shannon_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (natural log) between the shares of each row pair."""
    p, q = _shares(ref), _shares(cur)
    m = (p + q) / 2
    divergence = np.sum(special.rel_entr(p, m) + special.rel_entr(q, m), axis=1)
    return np.asarray(np.sqrt(np.maximum(divergence, 0.0) / 2), dtype=np.float64)


def fill_zero_rows(shares: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """:func:`monitor.drift._frequencies.fill_zeros` on each row."""
    smallest = np.where(shares > 0, shares, np.inf).min(axis=1, keepdims=True)
    fill = np.where(smallest <= floor, smallest / 1e6, floor)
    return np.where(shares > 0, shares, fill)


def psi_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """PSI between the shares of each row pair, empty bins floored as in evidently."""
    r, c = fill_zero_rows(_shares(ref)), fill_zero_rows(_shares(cur))
    return np.asarray(np.sum((r - c) * np.log(r / c), axis=1), dtype=np.float64)
