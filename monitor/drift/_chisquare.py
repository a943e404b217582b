"""Pearson chi-square test of homogeneity of the reference and current counts."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy import special, stats

from monitor.drift._base import DiscreteTest, MethodName, PreparedColumn
from monitor.drift._frequencies import aligned_counts
from monitor.drift._noise import (
    DRAW_LIMIT,
    MAX_DRAWS,
    MIN_EXPECTED,
    MIN_PERMUTATIONS,
    draw_splits,
    sparse,
)
from monitor.drift._profile import ColumnSummary

EXCEEDANCES = 100
"""Null tables at least as extreme as the observed one after which :func:`exact_p_value`
stops drawing (Besag & Clifford's sequential Monte Carlo p-value): about 10 % relative
error on the p-value, and 200 draws on an unremarkable window."""

_BLOCK_CELLS = 4_000_000
"""Largest draws x categories block drawn at once (memory bound)."""

TAIL_SDS = 40
"""How many standard deviations past a count :func:`category_p_value` sums its tail."""

_TAIL_CELLS = 1_000_000
"""Largest block of tail terms summed at once (memory bound)."""

_LOOKUP_LARGEST = 100_000
"""Largest column total up to which :func:`exact_p_value` looks the draws' log-factorials
up in a table (3 ms to build at this size) rather than computing each."""

CATEGORY_SHARE = 0.1
"""Share of the level spent on the categories pooled away, tested one by one (a weighted
Bonferroni split): a sparse table drifts when the pooled table's p-value is under 0.9
times the threshold or the pooled categories' under 0.1 times it."""


def pool_sparse(table: np.ndarray) -> np.ndarray:
    """The 2 x k ``table`` (no empty category) with the categories expected fewer than
    :data:`~monitor.drift._noise.MIN_EXPECTED` times in its smaller row merged into one
    column, grown by the next-smallest categories until that column is itself expected
    often enough."""
    return _pool(table)[0]


def _pool(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pool_sparse`'s table, and which of ``table``'s columns it merged (none:
    all ``False``). Unchanged when no category is sparse, and when pooling would leave
    one column: with every category sparse (20 even categories against 100-row windows)
    the table was pooled whole and the column could never drift, a window all of one
    new value included (p = 1)."""
    total = table.sum()
    col = table.sum(axis=0)
    smaller = table.sum(axis=1).min()
    merged = col * smaller / total < MIN_EXPECTED
    if not merged.any():
        return table, merged
    pool = table[:, merged].sum(axis=1)
    rest = np.flatnonzero(~merged)
    rest = rest[np.argsort(col[rest], kind="stable")]
    taken = 0
    while pool.sum() * smaller / total < MIN_EXPECTED and taken < rest.size:
        pool = pool + table[:, rest[taken]]
        merged[rest[taken]] = True
        taken += 1
    if rest.size - taken < 1:
        return table, np.zeros_like(merged)
    return np.column_stack([table[:, rest[taken:]], pool]), merged


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.asarray(
        special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0),
        dtype=np.float64,
    )


def category_p_value(table: np.ndarray, columns: np.ndarray) -> float:
    """Bonferroni p-value over the ``columns`` (a mask) of the 2 x k ``table`` of the
    exact two-sided tests of each one's current count: when the pooled counts are split
    at random into samples of the two sizes, a column's current count is hypergeometric
    (its total drawn from all the rows, the window's size of them), and its p-value
    twice its tail on the far side of the mean. A value the reference never held on 20
    of 300 window rows (5000 reference rows) is about 1e-25 before the correction.

    A tail is summed over at most :data:`TAIL_SDS` standard deviations past the count
    (the law is log-concave: beyond that its terms are negligible), in blocks of about
    :data:`_TAIL_CELLS` terms: a 10-million-row reference with 20,000 categories of
    about 500 rows would otherwise sum 10 million terms."""
    n_cur = int(round(float(table[1].sum())))
    n = int(round(float(table.sum())))
    totals = np.rint(table.sum(axis=0)[columns]).astype(np.int64)
    counts = np.rint(table[1, columns]).astype(np.int64)
    mean = totals * (n_cur / n)
    sd = np.sqrt(mean * (1 - totals / n) * (n - n_cur) / max(n - 1, 1))
    reach = np.ceil(TAIL_SDS * sd).astype(np.int64) + 10
    upper = counts >= mean
    low = np.where(upper, counts, np.maximum(np.maximum(0, totals - (n - n_cur)), counts - reach))
    high = np.where(upper, np.minimum(np.minimum(totals, n_cur), counts + reach), counts)
    sizes = high - low + 1
    block = (np.cumsum(sizes) - sizes) // _TAIL_CELLS
    edges = np.flatnonzero(np.diff(block)) + 1
    smallest = min(
        float(np.min(_log_tails(totals[part], low[part], sizes[part], n, n_cur)))
        for part in np.split(np.arange(totals.size), edges)
    )
    return float(min(1.0, 2.0 * totals.size * math.exp(smallest)))


def _log_tails(
    totals: np.ndarray, low: np.ndarray, sizes: np.ndarray, n: int, n_cur: int
) -> np.ndarray:
    """Per column, the log of the probability that its current count is one of
    ``low .. low + sizes - 1`` (hypergeometric: ``n`` rows, ``totals`` of them the
    column's, ``n_cur`` drawn)."""
    starts = np.cumsum(sizes) - sizes
    segment = np.repeat(np.arange(totals.size), sizes)
    k = low[segment] + np.arange(int(sizes.sum())) - starts[segment]
    t = totals[segment]
    log_pmf = (
        _log_comb(t, k)
        + _log_comb(n - t, n_cur - k)
        - _log_comb(np.array(float(n)), np.array(float(n_cur)))
    )
    top = np.maximum.reduceat(log_pmf, starts)
    return np.asarray(np.log(np.add.reduceat(np.exp(log_pmf - top[segment]), starts)) + top)


def _log_probability(
    totals: np.ndarray, rows: np.ndarray, log_factorial: np.ndarray | None = None
) -> np.ndarray:
    """Log-probability, up to a constant, of each current row of ``rows`` given the
    column ``totals`` (multivariate hypergeometric): ``sum(log C(total_j, row_j))``.
    With ``log_factorial`` (``log(k!)`` for ``k`` up to the largest total) integer
    ``rows`` are looked up in it rather than computed (several times faster)."""
    if log_factorial is not None:
        whole = totals.astype(np.int64)
        return np.asarray(
            np.sum(
                log_factorial[whole] - log_factorial[rows] - log_factorial[whole - rows], axis=-1
            ),
            dtype=np.float64,
        )
    return np.asarray(
        np.sum(
            special.gammaln(totals + 1)
            - special.gammaln(rows + 1)
            - special.gammaln(totals - rows + 1),
            axis=-1,
        ),
        dtype=np.float64,
    )


def exact_p_value(table: np.ndarray, *, seed: int = 0) -> float:
    """Two-sided exact p-value of the 2 x k ``table`` (reference row, current row; no
    empty column) given its margins: the probability, when the pooled counts are split
    at random into samples of the two sizes, of a table no more probable than the
    observed one (Fisher's exact test; Freeman-Halton's beyond two columns).

    Two columns: :func:`scipy.stats.fisher_exact`. More: random splits drawn with a
    generator seeded by ``seed`` until :data:`EXCEEDANCES` of them are as extreme, at
    most :data:`~monitor.drift._noise.MAX_DRAWS` (fewer, down to
    :data:`~monitor.drift._noise.MIN_PERMUTATIONS`, past
    :data:`~monitor.drift._noise.DRAW_LIMIT` category draws), Besag & Clifford's
    sequential p-value, valid whatever the number of draws. Where the exact p-value's
    upper bound, the number of possible tables times the observed one's probability, is
    below the draws' resolution (one over their number) that bound is the p-value,
    with no draws: a window all of one new value is p < 1e-100, not 1 / 20,000."""
    if table.shape[1] == 2:
        return float(stats.fisher_exact(np.rint(table).astype(np.int64)).pvalue)
    totals = np.rint(table.sum(axis=0))
    n_cur = int(round(float(table[1].sum())))
    log_total = float(
        special.gammaln(totals.sum() + 1)
        - special.gammaln(n_cur + 1)
        - special.gammaln(totals.sum() - n_cur + 1)
    )
    observed = float(_log_probability(totals, np.rint(table[1])))
    cutoff = observed + 1e-7 * max(1.0, abs(observed))  # ties within rounding count
    runs = max(MIN_PERMUTATIONS, min(MAX_DRAWS, DRAW_LIMIT // totals.size))
    # tables: current rows of n_cur over k columns, at most C(n_cur + k - 1, k - 1)
    log_tables = min(
        float(np.sum(np.log1p(totals))),
        math.lgamma(n_cur + totals.size) - math.lgamma(n_cur + 1) - math.lgamma(totals.size),
    )
    bound = math.exp(min(0.0, log_tables + observed - log_total))
    if bound <= 1.0 / runs:
        return bound
    rng = np.random.default_rng(seed)
    pooled = totals.astype(np.int64)
    largest = int(pooled.max())
    log_factorial = (
        special.gammaln(np.arange(largest + 1) + 1.0) if largest <= _LOOKUP_LARGEST else None
    )
    block = max(1, min(2 * EXCEEDANCES, _BLOCK_CELLS // totals.size))
    drawn = extreme = 0
    while drawn < runs - 1:
        size = min(block, runs - 1 - drawn)
        rows = draw_splits(rng, pooled, n_cur, size)
        if log_factorial is None:
            rows = rows.astype(np.float64)
        hits = np.flatnonzero(_log_probability(totals, rows, log_factorial) <= cutoff)
        if extreme + hits.size >= EXCEEDANCES:
            return EXCEEDANCES / (drawn + int(hits[EXCEEDANCES - extreme - 1]) + 1)
        extreme += hits.size
        drawn += size
        block = min(block * 2, max(1, _BLOCK_CELLS // totals.size))
    return float((extreme + 1) / runs)


class ChiSquare(DiscreteTest):
    """Chi-square test that the reference and the current window are samples of one
    distribution: Pearson's test of homogeneity on the 2 x k table of their counts
    (categories absent from both dropped), without Yates' continuity correction.

    The reference is a sample too. evidently's goodness-of-fit form, the current counts
    against the reference shares taken as exact, ignores the reference's own sampling
    noise: on unchanged data with four categories and 500 rows on each side a 5 % test
    rejected 28 % of windows, and a value the reference happened not to hold was
    infinite drift (p = 0) after a single request. Without the correction the 2 x 2
    case is the two-proportion Z-test squared (the ``z`` method's p-value); Yates'
    correction would make it conservative, well under its level at these sizes.

    Categories expected fewer than 5 times in the smaller sample are pooled into one
    before the test (:func:`pool_sparse`): with many sparse categories the chi-square
    approximation over-rejected (100 Zipf-distributed classes, 100-row windows: 8.8 % of
    unchanged windows at a nominal 5 %). ``statistic`` is the pooled table's. Where
    pooling would leave one column, or the pooled table still has a cell expected fewer
    than 5 times, the table is tested exactly (:func:`exact_p_value`, seeded by
    ``seed``): the approximation rejected 6.6-7.5 % of unchanged 40-100-row windows of a
    column with shares 0.97 / 0.02 / 0.01, and a 0/1 flag never set in 5000 reference
    rows and set once in a 100-row window was p = 1.5e-12 where Fisher's exact test
    gives 0.0196.

    The pooled categories are also tested one by one (:func:`category_p_value`), with
    :data:`CATEGORY_SHARE` of the level: pooling merged a value the reference never held
    (expected about once in a 300-row window) into a common category, where it drowned,
    so a new value on 20 of 300 rows scored p = 0.89, and one on 10 rows drifted on 9 %
    of seeds (now on all). Testing the table unpooled instead found new values but lost
    the pooled test's power on shifts among the common categories: with a sparse tail
    (1000 Zipf classes, a 1000-row window, the top tenth's share up by half) it drifted
    on none of 100 seeds where pooling drifted on 55. The p-value is
    ``min(1, p_pooled / 0.9, p_categories / 0.1)``.

    Applies to categorical columns and to numeric columns with at most 20 distinct
    reference values. Drift when ``p_value < threshold`` (default 0.05)."""

    name: ClassVar[MethodName] = "chisquare"

    def _compute(
        self, summary: ColumnSummary, current: PreparedColumn
    ) -> tuple[float, float | None]:
        counts = aligned_counts(summary, current)
        assert counts is not None
        ref, cur = counts
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:  # one category in all: nothing to tell apart
            return 0.0, 1.0
        pooled, merged = _pool(table)
        result = stats.chi2_contingency(pooled, correction=False)
        p_value = float(result.pvalue)
        if sparse(pooled[0], pooled[1]):
            p_value = exact_p_value(pooled, seed=self.seed)
        if merged.any():
            p_value = min(
                1.0,
                p_value / (1.0 - CATEGORY_SHARE),
                category_p_value(table, merged) / CATEGORY_SHARE,
            )
        return float(result.statistic), p_value
