"""Contract suite: every drift method on the same inputs (STYLE #17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.drift import (
    METHODS,
    ColumnDriftConfig,
    ColumnSummary,
    DriftDetector,
    DriftError,
    DriftMethod,
    ReferenceProfile,
)
from monitor.drift._chisquare import category_p_value, pool_sparse

NUMERIC_METHODS = ["ks", "psi", "wasserstein", "jensenshannon"]
CATEGORICAL_METHODS = ["psi", "jensenshannon", "chisquare", "z"]


def _summary(values: np.ndarray | list[object], kind: str) -> ColumnSummary:
    frame = pd.DataFrame({"x": values})
    return ReferenceProfile.build(frame, column_types={"x": kind}).columns["x"]  # type: ignore[dict-item]


def _categories(rng: np.random.Generator, n: int, p: list[float], binary: bool) -> np.ndarray:
    levels = ["a", "b"] if binary else ["a", "b", "c", "d"]
    probs = np.array(p[: len(levels)], dtype=float)
    return rng.choice(np.array(levels, dtype=object), n, p=probs / probs.sum())


@pytest.fixture(params=NUMERIC_METHODS)
def numeric_method(request: pytest.FixtureRequest) -> DriftMethod:
    return METHODS[request.param]()


@pytest.fixture(params=CATEGORICAL_METHODS)
def categorical_method(request: pytest.FixtureRequest) -> DriftMethod:
    return METHODS[request.param]()


class TestNumericContract:
    def test_same_distribution_is_not_drift(self, numeric_method: DriftMethod) -> None:
        rng = np.random.default_rng(1)
        result = numeric_method.test(
            _summary(rng.normal(0, 1, 3000), "num"), rng.normal(0, 1, 3000)
        )
        assert result.status == "ok" and not result.drifted
        assert result.method == numeric_method.name
        assert (result.p_value is not None) == numeric_method.returns_p_value

    def test_shifted_distribution_is_drift(self, numeric_method: DriftMethod) -> None:
        rng = np.random.default_rng(2)
        result = numeric_method.test(
            _summary(rng.normal(0, 1, 3000), "num"), rng.normal(1, 1, 3000)
        )
        assert result.status == "drift" and result.drifted

    @pytest.mark.parametrize(
        ("current", "reason"),
        [
            (np.array([]), "no non-missing values"),
            (np.array([0.3]), "fewer than min_rows"),
            (np.full(500, np.nan), "no non-missing values"),
        ],
        ids=["empty", "one-row", "all-nan"],
    )
    def test_degenerate_current_is_insufficient(
        self, numeric_method: DriftMethod, current: np.ndarray, reason: str
    ) -> None:
        ref = _summary(np.random.default_rng(3).normal(0, 1, 500), "num")
        result = numeric_method.test(ref, current)
        assert result.status == "insufficient_data" and not result.drifted
        assert result.statistic is None and result.reason is not None and reason in result.reason

    def test_constant_column_is_insufficient(self, numeric_method: DriftMethod) -> None:
        result = numeric_method.test(_summary(np.full(500, 2.0), "num"), np.full(400, 2.0))
        assert result.status == "insufficient_data"
        assert result.reason is not None and "constant" in result.reason


class TestCategoricalContract:
    def test_same_frequencies_are_not_drift(self, categorical_method: DriftMethod) -> None:
        rng = np.random.default_rng(4)
        binary = categorical_method.name == "z"
        p = [0.4, 0.3, 0.2, 0.1]
        result = categorical_method.test(
            _summary(_categories(rng, 3000, p, binary), "cat"), _categories(rng, 3000, p, binary)
        )
        assert result.status == "ok" and not result.drifted

    def test_reweighted_categories_are_drift(self, categorical_method: DriftMethod) -> None:
        rng = np.random.default_rng(5)
        binary = categorical_method.name == "z"
        result = categorical_method.test(
            _summary(_categories(rng, 3000, [0.4, 0.3, 0.2, 0.1], binary), "cat"),
            _categories(rng, 3000, [0.1, 0.2, 0.3, 0.4], binary),
        )
        assert result.status == "drift" and result.drifted

    def test_single_shared_category_is_insufficient(self, categorical_method: DriftMethod) -> None:
        result = categorical_method.test(_summary(["a"] * 300, "cat"), np.array(["a"] * 300))
        assert result.status == "insufficient_data"


def test_numeric_only_methods_refuse_categorical_columns() -> None:
    for name in ("ks", "wasserstein"):
        result = METHODS[name]().test(_summary(["a", "b"] * 100, "cat"), np.array(["a", "b"] * 100))
        assert result.status == "insufficient_data"
        assert result.reason is not None and "does not apply" in result.reason


def test_p_value_threshold_must_be_below_one() -> None:
    with pytest.raises(DriftError, match="threshold"):
        METHODS["ks"](threshold=1.5)


def test_statistics_match_scipy_on_the_full_reference() -> None:
    rng = np.random.default_rng(6)
    ref, cur = rng.normal(0, 2, 2000), rng.normal(0.3, 2.2, 1500)
    summary = _summary(ref, "num")
    w = METHODS["wasserstein"]().test(summary, cur)
    assert w.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref))
    ks = METHODS["ks"]().test(summary, cur)
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert ks.statistic == pytest.approx(expected.statistic)
    assert ks.p_value == pytest.approx(expected.pvalue, rel=1e-6)


def test_chisquare_is_scipy_s_test_of_homogeneity_of_the_two_samples() -> None:
    ref = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    cur = np.array(["a"] * 420 + ["b"] * 330 + ["c"] * 250, dtype=object)
    result = METHODS["chisquare"]().test(_summary(ref, "cat"), cur)
    expected = stats.chi2_contingency([[500, 300, 200], [420, 330, 250]], correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_chisquare_weighs_a_category_the_reference_never_had_by_its_count() -> None:
    """The reference is a sample: one request of a rare category it happened not to hold
    is no evidence of drift (the goodness-of-fit test called it infinite, p = 0); fifty
    are."""
    ref = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    once = METHODS["chisquare"]().test(_summary(ref, "cat"), np.r_[ref, ["zzz"]])
    assert once.status == "ok" and not once.drifted
    often = METHODS["chisquare"]().test(_summary(ref, "cat"), np.r_[ref, ["zzz"] * 50])
    assert often.drifted and often.statistic is not None and np.isfinite(often.statistic)


def _chisquare_rejections(
    n_ref: int, n_cur: int, shares: list[float], shifted: list[float], runs: int
) -> float:
    levels = np.array(list("abcd")[: len(shares)], dtype=object)
    rejections = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        ref = rng.choice(levels, n_ref, p=shares)
        cur = rng.choice(levels, n_cur, p=shifted)
        rejections += METHODS["chisquare"]().test(_summary(ref, "cat"), cur).drifted
    return rejections / runs


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shares"),
    [
        (500, 500, [0.4, 0.3, 0.2, 0.1]),
        (1500, 1000, [0.4, 0.3, 0.2, 0.1]),
        (500, 500, [0.7, 0.3]),
    ],
    ids=["four-categories-500-500", "four-categories-1500-1000", "two-categories-500-500"],
)
def test_chisquare_holds_its_level_when_nothing_changed(
    n_ref: int, n_cur: int, shares: list[float]
) -> None:
    """A/A: 400 seeded reference/window pairs drawn from the same shares reject at about
    alpha = 0.05 (within three binomial standard errors). Taking the reference's shares
    as exact (a goodness-of-fit test) rejected 28 % of them at 500 and 500 rows."""
    rate = _chisquare_rejections(n_ref, n_cur, shares, shares, runs=400)
    assert abs(rate - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / 400)


def test_chisquare_detects_a_known_shift_of_the_shares() -> None:
    """Shares 0.4/0.3/0.2/0.1 moving to 0.3/0.3/0.2/0.2, 500 rows on each side: the
    test's power there is about 0.99."""
    rate = _chisquare_rejections(500, 500, [0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2], runs=200)
    assert rate >= 0.95


def test_psi_uses_reference_decile_bins() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, 10_000)
    summary = _summary(ref, "num")
    result = METHODS["psi"]().test(summary, rng.normal(0, 1, 10_000))
    assert result.statistic == pytest.approx(0.0008634969830904384, rel=1e-12)
    assert len(summary.psi_edges) == 9  # type: ignore[union-attr]
    assert np.allclose(summary.psi_shares, 0.1)  # type: ignore[union-attr]


_REF_ABC = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
_CUR_ABC = ["a"] * 420 + ["b"] * 330 + ["c"] * 250


def test_psi_over_categories_is_the_hand_computed_sum() -> None:
    """Shares r = (0.5, 0.3, 0.2), c = (0.42, 0.33, 0.25):
    PSI = sum((r - c) ln(r / c)) = 0.027965"""
    r, c = np.array([0.5, 0.3, 0.2]), np.array([0.42, 0.33, 0.25])
    expected = float(np.sum((r - c) * np.log(r / c)))
    assert expected == pytest.approx(0.027965, abs=1e-6)
    result = METHODS["psi"]().test(_summary(np.array(_REF_ABC, dtype=object), "cat"), _CUR_ABC)
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_psi_over_reference_deciles_is_the_hand_computed_sum() -> None:
    """Reference 0..99: deciles at 9.9, 19.8, ..., 89.1, a tenth in each bin. Current
    50..149: nothing in the first five bins (floored to 1e-4), a tenth in each of the
    next four, 60 % in the last."""
    result = METHODS["psi"]().test(_summary(np.arange(100.0), "num"), np.arange(50.0, 150.0))
    expected = 5 * (0.1 - 1e-4) * np.log(0.1 / 1e-4) + (0.1 - 0.6) * np.log(0.1 / 0.6)
    assert expected == pytest.approx(4.3463, abs=1e-4)
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_psi_of_a_continuous_shift_over_reference_deciles_is_unchanged() -> None:
    """A column of many distinct values keeps the decile bins: the value PSI gave before
    discrete columns were binned by value."""
    rng = np.random.default_rng(2)
    summary = _summary(rng.normal(0, 1, 3000), "num")
    result = METHODS["psi"]().test(summary, rng.normal(1, 1, 3000))
    assert result.statistic == pytest.approx(1.0792244647198939, rel=1e-12)


def test_psi_flags_a_constant_reference_column_that_takes_a_new_value() -> None:
    """Reference: 5,000 zeros; window: 2,500 zeros and 2,500 ones. Binned at the
    reference deciles (one edge, at 0, with an open top bin) both sides put everything in
    the top bin and PSI was 0. By value: r = (1, 1e-4 floored), c = (0.5, 0.5), PSI =
    0.5 ln 2 + (0.5 - 1e-4) ln(0.5 / 1e-4) = 4.6044."""
    summary = _summary(np.zeros(5000), "num")
    result = METHODS["psi"]().test(summary, np.r_[np.zeros(2500), np.ones(2500)])
    expected = 0.5 * np.log(2) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    assert expected == pytest.approx(4.6044, abs=1e-4)
    assert result.status == "drift"
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_psi_flags_a_binary_column_whose_code_moves_above_the_reference_maximum() -> None:
    """A 0/1 column whose 1s become 7s: the decile bins' open top bin held both, and PSI
    was 3e-5."""
    rng = np.random.default_rng(0)
    summary = _summary(rng.integers(0, 2, 5000).astype(float), "num")
    result = METHODS["psi"]().test(summary, rng.integers(0, 2, 5000) * 7.0)
    assert result.status == "drift"
    assert result.statistic is not None and result.statistic > 5.0


def test_psi_of_an_unchanged_binary_column_is_not_drift() -> None:
    rng = np.random.default_rng(0)
    summary = _summary(rng.integers(0, 2, 5000).astype(float), "num")
    result = METHODS["psi"]().test(summary, rng.integers(0, 2, 5000).astype(float))
    assert result.status == "ok"
    assert result.statistic is not None and result.statistic < 1e-3


def test_jensen_shannon_is_the_natural_log_distance() -> None:
    """sqrt((KL(r || m) + KL(c || m)) / 2) with m = (r + c) / 2 and natural logs (in log 2
    it would be 1.2011 times larger)."""
    r, c = np.array([0.5, 0.3, 0.2]), np.array([0.42, 0.33, 0.25])
    m = (r + c) / 2
    expected = float(np.sqrt((np.sum(r * np.log(r / m)) + np.sum(c * np.log(c / m))) / 2))
    assert expected == pytest.approx(0.059079, abs=1e-6)
    result = METHODS["jensenshannon"]().test(
        _summary(np.array(_REF_ABC, dtype=object), "cat"), _CUR_ABC
    )
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_z_test_is_the_two_sided_two_proportion_test() -> None:
    """Reference 60 "a" / 40 "b", current 100 / 100: the share of "b" (all but the first
    value) is 0.4 against 0.5; pooled 140/300. z = -0.1 / sqrt(pooled (1 - pooled)
    (1/100 + 1/200)) = -1.6366, two-sided p = 0.10171 — scipy's 2x2 chi-square test of
    homogeneity without correction (z**2 is its statistic)."""
    ref = np.array(["a"] * 60 + ["b"] * 40, dtype=object)
    cur = np.array(["a"] * 100 + ["b"] * 100, dtype=object)
    pooled = 140 / 300
    z = (0.4 - 0.5) / np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 200))
    chi2 = stats.chi2_contingency([[60, 40], [100, 100]], correction=False)
    assert (z, 2 * stats.norm.sf(abs(z))) == pytest.approx((-1.636634, 0.101707), abs=1e-6)
    result = METHODS["z"]().test(_summary(ref, "cat"), cur)
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.statistic**2 == pytest.approx(chi2.statistic, rel=1e-12)  # type: ignore[operator]
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-12)
    assert result.status == "ok"  # 0.10 > 0.05 (a one-sided p of 0.051 would be too)


@pytest.mark.parametrize(
    ("classes", "n_ref", "n_cur"),
    [(100, 5000, 100), (300, 5000, 200)],
    ids=["100-classes-100-rows", "300-classes-200-rows"],
)
def test_chisquare_holds_its_level_with_many_sparse_categories(
    classes: int, n_ref: int, n_cur: int
) -> None:
    """A/A with Zipf-distributed classes, most of them expected fewer than 5 times in the
    window: the chi-square approximation rejected 8.8 % of 1000 unchanged windows at a
    nominal 5 % (100 classes, 100 rows). Categories expected fewer than 5 times are pooled
    into one before the test; over 20 references of 50 windows each the rate is within
    three binomial standard errors of 0.05."""
    rng = np.random.default_rng(classes + n_cur)
    weights = 1 / np.arange(1, classes + 1)
    shares = weights / weights.sum()
    labels = np.array([str(k) for k in range(classes)], dtype=object)
    method = METHODS["chisquare"]()
    rejections = []
    for _ in range(20):
        summary = _summary(rng.choice(labels, n_ref, p=shares), "cat")
        rejections += [
            method.test(summary, rng.choice(labels, n_cur, p=shares)).drifted for _ in range(50)
        ]
    rate = np.mean(rejections)
    assert abs(rate - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / len(rejections))


def test_chisquare_pools_categories_expected_fewer_than_five_times() -> None:
    """Smaller row 20 of 120: the last three categories are expected 0.67, 0.33 and 1.0
    times in it, so they are merged; the merged column (expected 2.0) takes the smallest
    remaining category (expected 8) and the test runs on a 2 x 2 table."""
    table = np.array([[50, 40, 3, 2, 5], [10, 8, 1, 0, 1]], dtype=np.float64)
    assert pool_sparse(table).tolist() == [[50, 50], [10, 10]]
    ordinary = np.array([[500, 300, 200], [420, 330, 250]], dtype=np.float64)
    assert pool_sparse(ordinary) is ordinary


def test_chisquare_over_categories_all_sparse_still_sees_a_window_of_one_new_value() -> None:
    """30 even categories against 120-row windows: each is expected under 5 times in the
    window, so pooling merged the whole table into one column, and the test answered
    p = 1 on any window, one all of a value the reference never held included."""
    rng = np.random.default_rng(3)
    labels = np.array([f"c{k}" for k in range(30)], dtype=object)
    summary = _summary(rng.choice(labels, 5000), "cat")
    method = METHODS["chisquare"]()
    new = method.test(summary, np.array(["ZZ"] * 120, dtype=object))
    assert new.drifted and new.p_value is not None and new.p_value < 1e-6
    table = np.array([[170.0, 160.0, 165.0], [4.0, 3.0, 5.0]])
    assert pool_sparse(table) is table  # pooled, one column would be left


@pytest.mark.parametrize("name", ["jensenshannon", "psi"])
def test_distances_over_many_categories_discount_their_sampling_noise(name: str) -> None:
    """A/A with 100 classes, 5000 reference rows and windows of 1100: the distance's
    sampling noise alone is about 0.12 (Jensen-Shannon) and 0.11 (PSI), over the fixed
    0.1, so every window drifted. A distance over categories must also pass its
    ``1 - alpha`` quantile under random splits of the pooled counts."""
    rng = np.random.default_rng(8)
    shares = rng.dirichlet(np.full(100, 2.0))
    labels = np.array([f"k{k}" for k in range(100)], dtype=object)
    summary = _summary(rng.choice(labels, 5000, p=shares), "cat")
    method = METHODS[name]()
    results = [method.test(summary, rng.choice(labels, 1100, p=shares)) for _ in range(30)]
    assert sum(r.drifted for r in results) <= 4
    assert all(r.threshold >= 0.1 for r in results)


def test_distances_over_few_categories_keep_evidently_s_threshold() -> None:
    """Four categories and 3000 rows a side: the noise floor is far under 0.1, so the
    verdict and its threshold are evidently's."""
    rng = np.random.default_rng(5)
    summary = _summary(_categories(rng, 3000, [0.4, 0.3, 0.2, 0.1], False), "cat")
    for name in ("jensenshannon", "psi"):
        result = METHODS[name]().test(summary, _categories(rng, 3000, [0.1, 0.2, 0.3, 0.4], False))
        assert result.drifted and result.threshold == 0.1


@pytest.mark.parametrize("threshold", [np.sqrt(np.log(2)), 0.9, 1.0], ids=["sqrt-ln-2", "0.9", "1"])
def test_a_jensen_shannon_threshold_it_can_never_reach_is_refused(threshold: float) -> None:
    """Jensen-Shannon (natural log) is at most sqrt(ln 2) = 0.8326: at 0.9 a column whose
    every value changed scored 0.8326 and did not drift. The method, a detector's column
    setting and the daemon's config refuse it, naming the field, the rule and the
    value."""
    from tunewatch._config_evaluation import DriftEvaluationConfig

    rule = r"`threshold` of jensenshannon must be in \(0, sqrt\(ln 2\) = 0\.8326\), got "
    with pytest.raises(DriftError, match=rule):
        METHODS["jensenshannon"](threshold=threshold)
    profile = ReferenceProfile.build(pd.DataFrame({"x": np.array(["a"] * 500, dtype=object)}))
    setting = ColumnDriftConfig(method="jensenshannon", threshold=threshold)
    with pytest.raises(DriftError, match=r"`columns\['x'\]`: " + rule):
        DriftDetector(profile, columns={"x": setting})
    with pytest.raises(ValueError, match=rule):
        DriftEvaluationConfig(columns={"x": {"method": "jensenshannon", "threshold": threshold}})


def test_a_jensen_shannon_threshold_just_under_its_largest_value_flags_a_total_change() -> None:
    summary = _summary(np.array(["a"] * 500, dtype=object), "cat")
    result = METHODS["jensenshannon"](threshold=0.83).test(summary, np.array(["b"] * 500))
    assert result.statistic == pytest.approx(np.sqrt(np.log(2)))
    assert result.drifted


def test_the_pooled_categories_are_also_tested_one_by_one() -> None:
    """Golden: reference 1000 / 1000 / 1000 / 0 / 2, window 90 / 90 / 90 / 28 / 2. The
    last two are expected under 5 times in the window and are pooled with ``a`` (the pool
    must reach 5): ``z``'s 28 rows drown in it. Each pooled column is also tested
    exactly (hypergeometric tails), Bonferroni over the three, with a tenth of the
    level: ``min(1, p_pooled / 0.9, p_categories / 0.1)``."""
    reference = np.array(["a"] * 1000 + ["b"] * 1000 + ["c"] * 1000 + ["y"] * 2, dtype=object)
    current = np.array(["a"] * 90 + ["b"] * 90 + ["c"] * 90 + ["z"] * 28 + ["y"] * 2, dtype=object)
    table = np.array([[1000.0, 1000, 1000, 2, 0], [90, 90, 90, 2, 28]])
    assert pool_sparse(table).tolist() == [[1000, 1000, 1002], [90, 90, 120]]
    pooled = stats.chi2_contingency(pool_sparse(table), correction=False)
    n, n_cur = 3302, 300
    tails = [
        2 * min(stats.hypergeom.sf(c - 1, n, t, n_cur), stats.hypergeom.cdf(c, n, t, n_cur))
        for t, c in ((1090, 90), (4, 2), (28, 28))
    ]
    expected = min(1.0, pooled.pvalue / 0.9, 3 * min(tails) / 0.1)
    assert category_p_value(table, np.array([True, False, False, True, True])) == pytest.approx(
        min(1.0, 3 * min(tails)), rel=1e-9
    )
    result = METHODS["chisquare"]().test(_summary(reference, "cat"), current)
    assert result.statistic == pytest.approx(pooled.statistic)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert result.drifted and expected < 1e-20
