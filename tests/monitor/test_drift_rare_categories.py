"""Discrete tests on rare values: a 2 x k table with a cell expected fewer than 5 times
is tested exactly (Fisher's test on 2 x 2, a seeded Monte Carlo Freeman-Halton test on
larger tables), where the normal and chi-square approximations over-rejected (STYLE #18:
a known verdict, and A/A rates on unchanged streams)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.drift import ChiSquare, ColumnSummary, DriftDetector, ReferenceProfile, ZTest
from monitor.drift._chisquare import exact_p_value
from monitor.drift._noise import draw_splits


def _summary(values: np.ndarray, kind: str) -> ColumnSummary:
    frame = pd.DataFrame({"x": values})
    return ReferenceProfile.build(frame, column_types={"x": kind}).columns["x"]  # type: ignore[dict-item]


def _within_three_errors(rate: float, level: float, n: int) -> bool:
    return rate <= level + 3 * np.sqrt(level * (1 - level) / n)


def test_one_flag_in_a_window_against_a_reference_of_none_is_fisher_s_exact_test() -> None:
    """Reference 5000 zeros, a 100-row window holding one 1: the normal approximation
    said p = 1.5e-12. The single 1 of the pooled 5,100 rows falls in the window with
    probability 100 / 5100 = 0.0196, Fisher's two-sided p-value: drift at the default
    0.05, and the Z-test and chi-square agree on it."""
    summary = _summary(np.zeros(5000), "num")
    current = np.r_[np.ones(1), np.zeros(99)]
    fisher = stats.fisher_exact([[5000, 0], [99, 1]]).pvalue
    assert fisher == pytest.approx(100 / 5100, rel=1e-9)
    z = ZTest().test(summary, current)
    assert z.method == "z" and z.p_value == pytest.approx(fisher, rel=1e-12)
    assert z.drifted == (fisher < 0.05)
    chi = ChiSquare().test(summary, current)
    assert chi.p_value == pytest.approx(fisher, rel=1e-12)


def test_one_rare_flag_is_not_dataset_drift_under_bonferroni_over_ten_columns() -> None:
    """The same flag among nine unchanged ones under ``bonferroni``: the cut-off is
    0.05 / 10 and Fisher's 0.0196 is above it (p = 1.5e-12 made it dataset drift)."""
    rng = np.random.default_rng(4)
    reference = pd.DataFrame(
        {f"f{i}": (rng.random(5000) < 0.3).astype(float) for i in range(1, 10)}
    )
    current = pd.DataFrame({f"f{i}": (rng.random(100) < 0.3).astype(float) for i in range(1, 10)})
    reference["f0"], current["f0"] = np.zeros(5000), np.r_[np.ones(1), np.zeros(99)]
    result = DriftDetector(ReferenceProfile.build(reference), dataset_rule="bonferroni").check(
        current
    )
    flag = result.column("f0")
    assert flag.method == "z" and flag.threshold == pytest.approx(0.005)
    assert flag.p_value == pytest.approx(100 / 5100, rel=1e-9) and not flag.drifted
    assert not result.dataset_drift


def test_ten_rare_flags_hold_bonferroni_s_false_alarm_rate() -> None:
    """A/A: ten flags set on 0.1 % of rows, 5000-row references, 100-row windows (20
    references, 10 windows each): 33.5 % of windows raised dataset drift under
    ``bonferroni`` (``fdr`` alike); now at most 7 %."""
    rng = np.random.default_rng(7)

    def flags(n: int) -> pd.DataFrame:
        return pd.DataFrame({f"f{i}": (rng.random(n) < 0.001).astype(float) for i in range(10)})

    alarms = []
    for _ in range(20):
        detector = DriftDetector(ReferenceProfile.build(flags(5000)), dataset_rule="bonferroni")
        alarms += [detector.check(flags(100)).dataset_drift for _ in range(10)]
    assert np.mean(alarms) <= 0.07


def test_a_single_rare_flag_holds_its_level() -> None:
    """A/A on one flag at 0.1 % (5000-row references, 100-row windows): the Z-test
    rejected 8.9 % at a nominal 5 %."""
    rng = np.random.default_rng(11)
    method = ZTest()
    rejections = []
    for _ in range(40):
        summary = _summary((rng.random(5000) < 0.001).astype(float), "num")
        for _ in range(25):
            verdict = method.test(summary, (rng.random(100) < 0.001).astype(float))
            if verdict.status != "insufficient_data":  # a flag 0 on both sides is constant
                rejections.append(verdict.drifted)
    assert _within_three_errors(float(np.mean(rejections)), 0.05, len(rejections))


def test_three_categories_with_two_rare_hold_chi_square_s_level() -> None:
    """A/A on a column of shares 0.97 / 0.02 / 0.01, 1000-row references, 100-row
    windows: pooling the rare two left one column, the table was tested unpooled and
    the chi-square approximation rejected 6.6-7.5 % at a nominal 5 %."""
    rng = np.random.default_rng(5)
    labels = np.array(["a", "b", "c"], dtype=object)
    shares = [0.97, 0.02, 0.01]
    method = ChiSquare()
    rejections = []
    for _ in range(20):
        summary = _summary(rng.choice(labels, 1000, p=shares), "cat")
        rejections += [
            method.test(summary, rng.choice(labels, 100, p=shares)).drifted for _ in range(20)
        ]
    assert _within_three_errors(float(np.mean(rejections)), 0.05, len(rejections))


def test_a_sparse_table_pooling_cannot_help_is_tested_exactly() -> None:
    """Reference 970 a / 20 b / 10 c, window 94 / 1 / 5: b and c are expected 2 and 1
    times in the window and pooling them with a leaves one column, so the table was
    tested unpooled by the chi-square approximation, p = 0.0036. The exact
    (Freeman-Halton) p-value is 0.0148; the seeded estimate is within 35 % of it."""
    reference = np.array(["a"] * 970 + ["b"] * 20 + ["c"] * 10, dtype=object)
    current = np.array(["a"] * 94 + ["b"] * 1 + ["c"] * 5, dtype=object)
    table = np.array([[970.0, 20.0, 10.0], [94.0, 1.0, 5.0]])
    approximation = stats.chi2_contingency(table, correction=False).pvalue
    exact = _freeman_halton(table)
    assert (approximation, exact) == pytest.approx((0.003647, 0.014806), abs=1e-6)
    verdict = ChiSquare(seed=1).test(_summary(reference, "cat"), current)
    assert verdict.p_value == pytest.approx(exact, rel=0.35)
    assert verdict.statistic == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic
    )


def test_a_rare_category_that_grows_is_still_drift() -> None:
    """The exact test keeps its power: a 1 % category at 12 % of a 100-row window."""
    rng = np.random.default_rng(6)
    labels = np.array(["a", "b", "c"], dtype=object)
    summary = _summary(rng.choice(labels, 1000, p=[0.97, 0.02, 0.01]), "cat")
    current = rng.choice(labels, 100, p=[0.86, 0.02, 0.12])
    verdict = ChiSquare().test(summary, current)
    assert verdict.drifted and verdict.p_value is not None and verdict.p_value < 1e-4


def _freeman_halton(table: np.ndarray) -> float:
    """The exact Freeman-Halton p-value of a 2 x 3 table, by enumeration."""
    totals, n_cur = table.sum(axis=0).astype(int), int(table[1].sum())
    n = int(totals.sum())

    def probability(row: tuple[int, ...]) -> float:
        ways = math.prod(math.comb(int(t), c) for t, c in zip(totals, row, strict=True))
        return ways / math.comb(n, n_cur)

    observed = probability(tuple(int(c) for c in table[1]))
    total = 0.0
    for a in range(min(totals[0], n_cur) + 1):
        for b in range(min(totals[1], n_cur - a) + 1):
            c = n_cur - a - b
            if 0 <= c <= totals[2]:
                p = probability((a, b, c))
                if p <= observed * (1 + 1e-7):
                    total += p
    return total


@pytest.mark.parametrize(
    "cur", [[96, 1, 3], [93, 4, 3], [94, 1, 5]], ids=["p-0.18", "p-0.06", "p-0.015"]
)
def test_monte_carlo_p_value_is_near_the_exact_one_and_seeded(cur: list[int]) -> None:
    """On a 2 x 3 table (1000 reference rows: 970 / 20 / 10) the seeded Monte Carlo
    p-value is within 35 % of the exact Freeman-Halton p-value (its relative standard
    error is about 10 %: 100 draws as extreme), and the same seed gives the same
    p-value."""
    table = np.array([[970.0, 20.0, 10.0], cur])
    exact = _freeman_halton(table)
    estimate = exact_p_value(table, seed=3)
    assert estimate == exact_p_value(table, seed=3)
    assert estimate == pytest.approx(exact, rel=0.35)


def _abc_with_new(rng: np.random.Generator, new: int, rows: int = 300) -> np.ndarray:
    """``rows`` values of a/b/c (even shares) of which the last ``new`` are ``"z"``."""
    abc = np.array(list("abc"), dtype=object)
    return np.r_[rng.choice(abc, rows - new), np.array(["z"] * new, dtype=object)]


def test_a_category_new_on_20_of_300_rows_is_drift() -> None:
    """Golden: 5000 reference rows of a/b/c, a 300-row window with 20 rows of a value the
    reference never held. ``z`` is expected 1.1 times in the window, so it was pooled
    with the smallest common category (the pool had to reach 5) and the change drowned
    in it: p = 0.89 (0.24 on this seed). The table is tested unpooled, exactly: the 20
    rows of ``z`` all landing in the window has probability about 1e-25."""
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.build(pd.DataFrame({"x": rng.choice(list("abc"), 5000)}))
    verdict = DriftDetector(profile).check(pd.DataFrame({"x": _abc_with_new(rng, 20)})).column("x")
    assert verdict.method == "chisquare" and verdict.drifted
    assert verdict.p_value is not None and verdict.p_value < 1e-6


def test_a_category_new_on_10_of_300_rows_is_drift_on_every_seed() -> None:
    """A new value on 3.3 % of a 300-row window drifted on 9 % of 200 seeds (15 rows:
    13 %, 30 rows: 60 %) while pooling hid it; unpooled, all of 20 seeds drift."""
    missed = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        summary = _summary(rng.choice(np.array(list("abc"), dtype=object), 5000), "cat")
        verdict = ChiSquare(seed=seed).test(summary, _abc_with_new(rng, 10))
        if not verdict.drifted:
            missed.append((seed, verdict.p_value))
    assert missed == []


def test_a_rare_category_that_surges_in_a_small_window_is_drift() -> None:
    """A category on 0.2 % of 5000 reference rows (expected 0.6 times in 300 rows) on 20
    rows of the window: pooled with a common category it was missed on most seeds."""
    rng = np.random.default_rng(12)
    labels = np.array(list("abcr"), dtype=object)
    summary = _summary(rng.choice(labels, 5000, p=[0.332, 0.333, 0.333, 0.002]), "cat")
    current = np.r_[rng.choice(labels[:3], 280), np.array(["r"] * 20, dtype=object)]
    verdict = ChiSquare().test(summary, current)
    assert verdict.drifted and verdict.p_value is not None and verdict.p_value < 1e-6


def test_zipf_classes_hold_the_level_against_a_1500_row_reference() -> None:
    """A/A, the case pooling was for: 100 Zipf-distributed classes, 1500-row references,
    300-row windows (most classes expected under 5 times), 10 references of 30 windows:
    tested unpooled and exactly, the rate stays within three binomial standard errors of
    0.05 (the chi-square approximation over-rejected here)."""
    rng = np.random.default_rng(13)
    weights = 1 / np.arange(1, 101)
    labels = np.array([f"v{k}" for k in range(100)], dtype=object)
    method = ChiSquare()
    rejections = []
    for _ in range(10):
        summary = _summary(rng.choice(labels, 1500, p=weights / weights.sum()), "cat")
        rejections += [
            method.test(summary, rng.choice(labels, 300, p=weights / weights.sum())).drifted
            for _ in range(30)
        ]
    assert _within_three_errors(float(np.mean(rejections)), 0.05, len(rejections))


@pytest.mark.parametrize(
    ("pooled", "n_cur"),
    [
        (np.full(1000, 11), 1000),  # few rows a category: drawn row by row
        (np.full(1000, 11), 10_000),  # the reference side is the smaller: drawn, then flipped
        (np.array([4000, 3000, 2000, 1000]), 3000),  # many rows a category: by category
    ],
    ids=["row-by-row", "smaller-side-flipped", "by-category"],
)
def test_random_splits_are_hypergeometric_whichever_way_they_are_drawn(
    pooled: np.ndarray, n_cur: int
) -> None:
    """Each drawn split is the window's side: its counts sum to the window's size, stay
    within the pooled counts, and average the hypergeometric mean ``total * n_cur / N``
    (within five standard errors over 2000 draws); the same seed draws the same."""
    draws = 2000
    rows = draw_splits(np.random.default_rng(1), pooled, n_cur, draws)
    again = draw_splits(np.random.default_rng(1), pooled, n_cur, draws)
    assert np.array_equal(rows, again)
    assert (rows.sum(axis=1) == n_cur).all() and (rows >= 0).all() and (rows <= pooled).all()
    n = pooled.sum()
    mean = pooled * n_cur / n
    var = mean * (1 - pooled / n) * (n - n_cur) / (n - 1)
    assert np.all(np.abs(rows.mean(axis=0) - mean) <= 5 * np.sqrt(var / draws) + 1e-12)
