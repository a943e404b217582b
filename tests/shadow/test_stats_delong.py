from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from monitor.objectives import roc_auc
from shadow.stats import (
    DELONG_MIN_PER_CLASS,
    GroupSequentialDeLong,
    StatsError,
    delong_arrays,
    delong_test,
    group_sequential_bounds,
    obrien_fleming_spending,
)
from shadow.stats._delong import delong_z
from shadow.stats._group_sequential import decide


def _scores(seed: int, n: int, gain: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    noise = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]], n)
    return y, y * 1.0 + noise[:, 0], y * (1.0 + gain) + noise[:, 1]


def test_auc_point_estimates_match_sklearn_and_monitor() -> None:
    y, a, b = _scores(1, 1500)
    b = np.round(b, 1)  # ties exercise the midranks
    result = delong_test(y, a, b)
    assert result.auc_champion == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auc_challenger == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result.auc_challenger == pytest.approx(roc_auc(y, b), abs=1e-12)
    assert result.difference == pytest.approx(result.auc_challenger - result.auc_champion)
    assert result.n_positive + result.n_negative == 1500


def test_delong_variance_agrees_with_a_stratified_bootstrap() -> None:
    y, a, b = _scores(2, 2000, gain=0.2)
    result = delong_test(y, a, b)
    rng = np.random.default_rng(3)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, k = pos.size, neg.size
    # 2,000 stratified resamples (DeLong conditions on the class counts); each row holds the
    # m resampled positives first, so Mann-Whitney AUC = (rank sum of the first m - m(m+1)/2)
    # / (m k) per row.
    idx = np.hstack([rng.choice(pos, (2000, m)), rng.choice(neg, (2000, k))])

    def auc(scores: np.ndarray) -> np.ndarray:
        ranks = rankdata(scores[idx], axis=1)
        return np.asarray((ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * k))

    bootstrap_var = float(np.var(auc(b) - auc(a), ddof=1))
    assert result.standard_error**2 == pytest.approx(bootstrap_var, rel=0.2)


def test_delong_arrays_evaluate_many_experiments_like_single_calls() -> None:
    y, _, _ = _scores(4, 300)
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 300)) + y, rng.normal(size=(6, 300)) + y
    auc_a, auc_b, var = delong_arrays(y, a, b)
    for i in range(6):
        single = delong_test(y, a[i], b[i])
        assert (auc_a[i], auc_b[i]) == pytest.approx((single.auc_champion, single.auc_challenger))
        assert np.sqrt(var[i]) == pytest.approx(single.standard_error)


def test_identical_scores_are_not_different() -> None:
    y, a, _ = _scores(6, 200)
    result = delong_test(y, a, a)
    assert (result.z, result.p_value, result.standard_error) == (0.0, 1.0, 0.0)


def test_delong_refuses_one_class_or_mismatched_lengths() -> None:
    with pytest.raises(StatsError, match="both classes, got 0 positives among 3"):
        delong_test(np.zeros(3), np.arange(3.0), np.arange(3.0))
    with pytest.raises(StatsError, match="0 or 1"):
        delong_test(np.array([0, 2, 1]), np.arange(3.0), np.arange(3.0))
    with pytest.raises(StatsError, match="3 labels but 2 scores"):
        delong_test(np.array([0, 1, 1]), np.arange(2.0), np.arange(2.0))


def test_delong_refuses_nan_score() -> None:
    """One row the champion failed to score made its AUC nan and the test answer z = 0,
    p = 1 ("no difference"); a group-sequential look spent a planned look on it."""
    y, a, b = _scores(7, 400, gain=1.0)
    a[17] = np.nan
    rule = "must be finite, one per label: index 17 is nan"
    with pytest.raises(StatsError, match=f"`champion_scores` {rule}"):
        delong_test(y, a, b)
    with pytest.raises(StatsError, match=f"`challenger_scores` {rule}"):
        delong_test(y, b, a)
    gsd = GroupSequentialDeLong(planned_looks=2)
    with pytest.raises(StatsError, match="`champion_scores`"):
        gsd.look(y, a, b)
    assert gsd.history == ()  # the refused look spent nothing
    batch = np.stack([b, b])
    batch[1, 3] = np.inf
    with pytest.raises(StatsError, match=r"`challenger_scores` .* index \(1, 3\) is inf"):
        delong_arrays(y, np.stack([b, b]), batch)


def test_delong_length_mismatch_is_stats_error() -> None:
    y, a, b = _scores(8, 50)
    with pytest.raises(StatsError, match="`challenger_scores` must be finite, one per label: 50 "):
        delong_test(y, a, b[:-1])
    with pytest.raises(StatsError, match="`champion_scores` .* 50 labels but 49 scores"):
        delong_test(y, a[:-1], b)
    with pytest.raises(StatsError, match="`champion_scores` and `challenger_scores` must"):
        delong_arrays(y, np.stack([a, a]), b)


def test_obrien_fleming_bounds_match_the_published_table() -> None:
    # Lan-DeMets O'Brien-Fleming-type, 5 equally spaced looks, two-sided alpha 0.05
    # (as tabulated by gsDesign, rpact and ldbounds).
    bounds = group_sequential_bounds([0.2, 0.4, 0.6, 0.8, 1.0], alpha=0.05)
    assert bounds == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=2e-3)
    assert group_sequential_bounds([1.0], alpha=0.05) == pytest.approx((1.959964,))
    assert float(obrien_fleming_spending(1.0, alpha=0.05)) == pytest.approx(0.05)


def test_group_sequential_looks_spend_alpha_and_stop_at_the_plan() -> None:
    y, a, b = _scores(7, 2000, gain=0.6)
    test = GroupSequentialDeLong(alpha=0.05, planned_looks=4)
    looks = [test.look(y[:n], a[:n], b[:n]) for n in (500, 1000, 1500, 2000)]
    assert [look.information_fraction for look in looks] == [0.25, 0.5, 0.75, 1.0]
    spent = [look.alpha_spent for look in looks]
    assert np.all(np.diff(spent) > 0) and spent[-1] == pytest.approx(0.05)
    assert all(look.nominal_alpha < 0.05 for look in looks)
    first = next(i for i, look in enumerate(looks) if look.decision != "continue")
    assert looks[first].z >= looks[first].critical_z
    assert {look.decision for look in looks[first:]} == {"challenger_better"}
    assert test.history == tuple(looks)
    with pytest.raises(StatsError, match="all 4 planned looks are spent"):
        test.look(y, a, b)


def test_information_fractions_must_increase() -> None:
    y, a, b = _scores(8, 400)
    test = GroupSequentialDeLong(planned_looks=3)
    test.look(y[:200], a[:200], b[:200], information_fraction=0.5)
    with pytest.raises(StatsError, match="`information_fraction` must increase"):
        test.look(y, a, b, information_fraction=0.4)


def test_a_perfect_ranker_against_a_constant_score_is_infinitely_far_not_equal() -> None:
    """Both models rank every pair alike (ties count a half), so DeLong's variance is 0;
    the AUCs differ by 0.5 and the z-statistic said 0, p = 1."""
    y = np.repeat([0, 1], 500)
    result = delong_test(y, np.full(1000, 0.3), y.astype(np.float64))
    assert result.difference == 0.5 and result.standard_error == 0.0
    assert result.z == np.inf and result.p_value == 0.0
    assert delong_test(y, y.astype(np.float64), np.full(1000, 0.3)).z == -np.inf


def test_group_sequential_delong_at_low_prevalence_keeps_its_alpha() -> None:
    """Exchangeable models (binormal, separation 1 sd, noise correlation 0.5) at 0.5 %
    positives, on the runner's schedule: a look every 500 requests, five looks, where a
    look waits for ``DELONG_MIN_PER_CLASS`` of each class. Looking as soon as both
    classes were present rejected 12 % of 2,000 seeded runs."""
    rng = np.random.default_rng(3)
    critical = GroupSequentialDeLong(alpha=0.05, planned_looks=5).critical_values()
    rejected, runs, n = 0, 600, 20_000
    for _ in range(runs):
        y = (rng.random(n) < 0.005).astype(np.int64)
        noise = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], n)
        positives = np.cumsum(y)
        enough = (positives >= DELONG_MIN_PER_CLASS) & (
            np.arange(1, n + 1) - positives >= DELONG_MIN_PER_CLASS
        )
        taken = 0
        for k, bound in enumerate(critical):
            m = taken + max(500 * (k + 1) - taken, 500)
            m = max(m, int(np.argmax(enough)) + 1)
            if m > n:
                break
            a, b, v = delong_arrays(y[:m], y[:m] + noise[:m, 0], y[:m] + noise[:m, 1])
            taken = m
            if decide(delong_z(a, b, v), bound) != 0:
                rejected += 1
                break
    assert rejected / runs <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)


def _delong_by_definition(
    y: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[float, float, float]:
    """DeLong et al. (1988) from the pairwise kernel ``psi(x, z) = [x > z] + [x = z] / 2``
    over every positive ``x`` and negative ``z``: each model's AUC, and the variance of the
    difference ``S10 / m + S01 / k`` from the placement values of the ``m`` positives and
    the ``k`` negatives."""

    def kernel(scores: np.ndarray) -> np.ndarray:
        x, z = scores[y == 1][:, None], scores[y == 0][None, :]
        return np.asarray((x > z) + 0.5 * (x == z))

    psi_a, psi_b = kernel(a), kernel(b)
    m, k = psi_a.shape
    v10 = psi_b.mean(axis=1) - psi_a.mean(axis=1)  # one per positive
    v01 = psi_b.mean(axis=0) - psi_a.mean(axis=0)  # one per negative
    variance = v10.var(ddof=1) / m + v01.var(ddof=1) / k
    return float(psi_a.mean()), float(psi_b.mean()), float(variance)


def test_delong_standard_error_at_ten_percent_positives_matches_the_definition() -> None:
    """199 positives against 1,801 negatives (ties included): the positives' placement
    variance is divided by their count, the negatives' by theirs (swapped, the standard
    error was 4.5 % too small)."""
    rng = np.random.default_rng(12)
    y = (rng.random(2000) < 0.1).astype(np.int64)
    noise = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]], 2000)
    a, b = np.round(y * 1.0 + noise[:, 0], 1), y * 1.4 + noise[:, 1]
    result = delong_test(y, a, b)
    auc_a, auc_b, variance = _delong_by_definition(y, a, b)
    assert (result.n_positive, result.n_negative) == (199, 1801)
    assert (result.auc_champion, result.auc_challenger) == pytest.approx((auc_a, auc_b), rel=1e-12)
    assert result.standard_error == pytest.approx(np.sqrt(variance), rel=1e-9)
    assert result.z == pytest.approx((auc_b - auc_a) / np.sqrt(variance), rel=1e-9)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(result.z)), rel=1e-9)


def test_group_sequential_decisions_are_two_sided() -> None:
    z = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    assert decide(z, 2.0).tolist() == [-1, -1, 0, 0, 0, 1, 1]


def test_a_clearly_worse_ranker_is_decided_worse_at_the_first_look() -> None:
    """The challenger separates the classes by 0.4 sd, the champion by 1 sd: z = -6.3 at
    the first of four looks, beyond its critical |z| of 4.33."""
    y, a, b = _scores(7, 2000, gain=-0.6)
    test = GroupSequentialDeLong(alpha=0.05, planned_looks=4)
    looks = [test.look(y[:n], a[:n], b[:n]) for n in (500, 1000, 1500, 2000)]
    assert looks[0].z == pytest.approx(-6.259, abs=1e-3)
    assert looks[0].critical_z == pytest.approx(4.333, abs=1e-3)
    assert [look.decision for look in looks] == ["challenger_worse"] * 4
    assert test.decision == "challenger_worse"


def test_nominal_alpha_is_the_two_sided_tail_beyond_the_critical_value() -> None:
    """One planned look spends all of alpha: |z| >= 1.96, nominal alpha 0.05. At every look
    the nominal alpha is ``2 P(Z >= critical)``, so ``p <= nominal_alpha`` exactly when
    ``|z| >= critical``."""
    y, a, b = _scores(7, 2000, gain=0.1)
    single = GroupSequentialDeLong(alpha=0.05, planned_looks=1).look(y, a, b)
    assert single.critical_z == pytest.approx(1.959964, abs=1e-6)
    assert single.nominal_alpha == pytest.approx(0.05, rel=1e-9)
    test = GroupSequentialDeLong(alpha=0.05, planned_looks=4)
    for n in (500, 1000, 1500, 2000):
        look = test.look(y[:n], a[:n], b[:n])
        assert look.nominal_alpha == pytest.approx(2 * sps.norm.sf(look.critical_z), rel=1e-12)
    assert test.history[-1].nominal_alpha == pytest.approx(0.0440, abs=1e-4)


def test_the_last_planned_look_spends_what_is_left_of_alpha_whatever_fraction_it_is_given() -> None:
    """Two planned looks, the second passed 0.8: it is the end of the plan, so it counts as
    information fraction 1 and spends all of alpha. Lan-DeMets O'Brien-Fleming bounds at
    (0.5, 1): 2.963 and 1.969 (gsDesign, rpact); at (0.5, 0.8) it would be 2.266 with 0.024
    spent, and the rest of alpha never."""
    y, a, b = _scores(7, 2000, gain=0.1)
    test = GroupSequentialDeLong(alpha=0.05, planned_looks=2)
    first = test.look(y[:1000], a[:1000], b[:1000], information_fraction=0.5)
    last = test.look(y, a, b, information_fraction=0.8)
    assert first.critical_z == pytest.approx(2.963, abs=1e-3)
    assert last.information_fraction == 1.0
    assert last.alpha_spent == pytest.approx(0.05, rel=1e-12)
    assert last.critical_z == pytest.approx(1.969, abs=1e-3)
    assert last.critical_z == group_sequential_bounds([0.5, 1.0], alpha=0.05)[1]
