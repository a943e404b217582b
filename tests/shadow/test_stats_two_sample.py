from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from shadow.stats import StatsError, TwoSampleSequentialTest, UnitUpdate
from shadow.stats._two_sample import ratio_third_cumulant, ratio_variance, unit_sums


def test_fixed_columns_match_welch_and_the_interval_is_wider() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.5, 800), rng.normal(0.95, 0.8, 600)
    look = TwoSampleSequentialTest().update(champion=a, challenger=b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert look.fixed_t_p == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert look.fixed_ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert look.estimate == pytest.approx(b.mean() - a.mean())
    assert look.ci_low < ci.low and look.ci_high > ci.high
    assert (look.n_champion, look.n_challenger) == (800, 600)


def test_arms_may_arrive_separately() -> None:
    test = TwoSampleSequentialTest(min_n=10)
    look = test.update(champion=np.ones(20))
    assert look.decision == "continue" and look.p_value == 1.0
    assert look.fixed_t_p == 1.0
    look = test.update(challenger=np.zeros(5))
    assert look.n_challenger == 5 and look.decision == "continue"
    with pytest.raises(StatsError, match="must not both be empty"):
        test.update()


@pytest.mark.parametrize(
    ("greater_is_better", "expected"),
    [(False, "challenger_worse"), (True, "challenger_better")],
    ids=["losses", "revenue"],
)
def test_orientation_follows_greater_is_better(greater_is_better: bool, expected: str) -> None:
    rng = np.random.default_rng(2)
    test = TwoSampleSequentialTest(greater_is_better=greater_is_better)
    for _ in range(20):
        look = test.update(champion=rng.normal(1.0, 1.0, 100), challenger=rng.normal(1.3, 1.0, 100))
    assert look.decision == expected
    assert test.decision == expected


def test_state_round_trips_through_strict_json() -> None:
    rng = np.random.default_rng(3)
    original = TwoSampleSequentialTest(method="msprt", mixing_sd=0.2, greater_is_better=True)
    for _ in range(5):
        original.update(champion=rng.normal(size=40), challenger=rng.normal(size=30))
    restored = TwoSampleSequentialTest.from_dict(
        json.loads(json.dumps(original.to_dict(), allow_nan=False))
    )
    assert restored.history == original.history
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert restored.update(champion=a, challenger=b) == original.update(champion=a, challenger=b)


def _grow(test: TwoSampleSequentialTest, totals: np.ndarray, added: np.ndarray, arm: str):
    """Add ``added[u]`` (one outcome per unit) to each unit's running totals and look."""
    before = totals.copy()
    totals[:, 0] += 1
    totals[:, 1] += added
    update = UnitUpdate(
        count_before=before[:, 0],
        total_before=before[:, 1],
        count_added=np.ones(len(added)),
        total_added=added,
    )
    return test.update_units(**{arm: update})


def test_units_with_correlated_outcomes_keep_the_error_rate() -> None:
    # A/A: 150 units per arm, each answering one request per look for 20 looks; a unit's
    # outcomes share a unit effect (intra-unit correlation 0.2). Counting requests as
    # independent understates the variance by the design effect (4.8 at the end).
    rng = np.random.default_rng(11)
    runs, units, looks, icc = 400, 150, 20, 0.2
    naive_rejects = unit_rejects = 0
    for _ in range(runs):
        effects = rng.normal(0.0, np.sqrt(icc), (2, units))
        naive = TwoSampleSequentialTest(alpha=0.05, min_n=30)
        clustered = TwoSampleSequentialTest(alpha=0.05, min_n=30)
        totals = [np.zeros((units, 2)), np.zeros((units, 2))]
        for _ in range(looks):
            outcomes = effects + rng.normal(0.0, np.sqrt(1 - icc), (2, units))
            naive.update(champion=outcomes[0], challenger=outcomes[1])
            _grow(clustered, totals[0], outcomes[0], "champion")
            _grow(clustered, totals[1], outcomes[1], "challenger")
        naive_rejects += naive.decision != "continue"
        unit_rejects += clustered.decision != "continue"
        assert clustered.history[-1].n_champion == units  # units, not requests
    assert naive_rejects / runs > 0.10
    assert unit_rejects / runs <= 0.05


def test_unit_totals_give_the_ratio_estimate_and_its_linearised_variance() -> None:
    rng = np.random.default_rng(12)
    test = TwoSampleSequentialTest(min_n=5)
    counts = [rng.integers(1, 6, 60), rng.integers(1, 6, 40)]
    sums = [rng.normal(1.0, 1.0, 60) * counts[0], rng.normal(0.8, 1.0, 40) * counts[1]]
    # fed in two looks: every unit first with half its outcomes, then the rest
    half = [c // 2 for c in counts]
    for step in (0, 1):
        updates = {}
        for arm, c, s, h in zip(("champion", "challenger"), counts, sums, half, strict=True):
            share = np.where(c > 0, h / c, 0.0)
            before_n, before_s = (h, s * share) if step else (np.zeros_like(c), np.zeros_like(s))
            added_n, added_s = (c - h, s * (1 - share)) if step else (h, s * share)
            updates[arm] = UnitUpdate(before_n, before_s, added_n, added_s)
        look = test.update_units(**updates)
    ratio = [s.sum() / c.sum() for c, s in zip(counts, sums, strict=True)]
    assert look.estimate == pytest.approx(ratio[1] - ratio[0])
    var = sum(
        (k / (k - 1)) * ((s - r * c) ** 2).sum() / c.sum() ** 2
        for c, s, r, k in zip(counts, sums, ratio, (60, 40), strict=True)
    )
    width = look.fixed_ci[1] - look.estimate  # Welch's t quantile times the standard error
    assert (look.n_champion, look.n_challenger) == (60, 40)
    assert width / np.sqrt(var) == pytest.approx(sps.t.ppf(0.975, 60 + 40 - 2), rel=0.02)


def test_single_outcome_units_match_the_per_outcome_update() -> None:
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=50), rng.normal(0.2, 1.0, 70)
    plain = TwoSampleSequentialTest(min_n=5).update(champion=a, challenger=b)
    units = TwoSampleSequentialTest(min_n=5).update_units(
        champion=UnitUpdate(np.zeros(50), np.zeros(50), np.ones(50), a),
        challenger=UnitUpdate(np.zeros(70), np.zeros(70), np.ones(70), b),
    )
    assert units.estimate == pytest.approx(plain.estimate)
    assert units.fixed_ci == pytest.approx(plain.fixed_ci)
    assert units.p_value == pytest.approx(plain.p_value)


def test_state_of_the_earlier_format_loads() -> None:
    rng = np.random.default_rng(14)
    a, b = rng.normal(size=40), rng.normal(size=30)
    state = TwoSampleSequentialTest(min_n=5).to_dict()
    state["stats"] = [[40, a.sum(), a @ a], [30, b.sum(), b @ b]]  # (n, sum, sum of squares)
    restored = TwoSampleSequentialTest.from_dict(state)
    c, d = rng.normal(size=10), rng.normal(size=10)
    expected = TwoSampleSequentialTest(min_n=5)
    expected.update(champion=a, challenger=b)
    assert restored.update(champion=c, challenger=d).estimate == pytest.approx(
        expected.update(champion=c, challenger=d).estimate
    )


def _sums(x: np.ndarray, looks: np.ndarray, *, cubes: bool = True) -> tuple[np.ndarray, ...]:
    """An arm's unit sums at each look (runs x looks), one outcome per unit."""
    n = np.broadcast_to(looks.astype(np.float64), (x.shape[0], looks.size))
    total, total_sq, total_cube = (np.cumsum(x**p, axis=1)[:, looks - 1] for p in (1, 2, 3))
    return tuple(
        np.asarray(v) for v in unit_sums(n, total, total_sq, total_cube if cubes else None)
    )


def _first_decisions(
    test: TwoSampleSequentialTest,
    champion: np.ndarray,
    challenger: np.ndarray,
    looks: np.ndarray,
    *,
    cubes: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Each run's first decision code (0 none, 1 better, -1 worse) and its look (-1 none)."""
    arr = test.evaluate(_sums(champion, looks, cubes=cubes), _sums(challenger, looks, cubes=cubes))
    decided = arr.decision != 0
    rows = np.arange(champion.shape[0])
    first = np.where(decided.any(axis=1), arr.decision[rows, decided.argmax(axis=1)], 0)
    at = np.where(decided.any(axis=1), looks[decided.argmax(axis=1)], -1)
    return first, at


def _costs(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    false_alarm: float,
    miss: float,
    cost: float,
) -> np.ndarray:
    """Per-request costs under a cost matrix ``[[0, 1], [cost, 0]]``: 1 for a false alarm
    on a share ``false_alarm`` of requests, ``cost`` for a missed positive on ``miss``."""
    u = rng.random(shape)
    return np.where(u < false_alarm, 1.0, np.where(u < false_alarm + miss, cost, 0.0))


@pytest.mark.parametrize(
    ("cost", "alarms", "loss_range", "rare_misses_in"),
    [
        (20.0, 0.04, None, "challenger"),  # a live split: the skewness burn-in alone
        (20.0, 0.04, None, "champion"),  # the unpaired rollback watch, roles swapped
        (100.0, 0.10, 100.0, "challenger"),  # rarer, larger misses need the loss range
    ],
    ids=["split-cost-20", "watch-cost-20", "split-cost-100-with-loss-range"],
)
def test_equally_costly_arms_with_rare_large_losses_are_rarely_told_apart(
    cost: float, alarms: float, loss_range: float | None, rare_misses_in: str
) -> None:
    """One arm raises false alarms (cost 1), the other rarely misses a positive (cost
    ``cost``) at the same expected cost. Until a miss has been seen the rare-miss arm looks
    strictly better and its variance far too small: with the burn-in of 500 alone, 38 % of
    these 400 seeded runs (64 % at cost 100) called it better. The skewness rule brings
    cost 20 to 1.25 %, in either role; at cost 100 it leaves 49.5 % (the false-alarm arm
    is skewed less, so the rule lets looks decide before a miss is likely) and the loss
    range brings that to 0. A look every 100 units per arm up to 30,000."""
    test = TwoSampleSequentialTest(alpha=0.05, planned_n=1000, min_n=500, loss_range=loss_range)
    plain = TwoSampleSequentialTest(alpha=0.05, planned_n=1000, min_n=500)
    rng = np.random.default_rng(7)
    looks = np.arange(100, 30_001, 100)
    decided = fooled = 0
    for _ in range(4):
        smooth = _costs(rng, (100, 30_000), false_alarm=alarms, miss=0.0, cost=cost)
        rare = _costs(rng, (100, 30_000), false_alarm=0.0, miss=alarms / cost, cost=cost)
        arms = (smooth, rare) if rare_misses_in == "challenger" else (rare, smooth)
        first, _ = _first_decisions(test, *arms, looks)
        decided += int((first != 0).sum())
        before, _ = _first_decisions(plain, *arms, looks, cubes=False)
        fooled += int((before != 0).sum())
    assert decided / 400 <= 0.05
    assert fooled / 400 > 0.25  # the plug-in variance alone


def test_a_fixed_baseline_that_shows_no_rare_miss_needs_the_loss_range() -> None:
    """The unpaired rollback watch: a baseline of 1,000 requests of the previous champion
    (misses at 0.2 %, cost 20) against the new one's false alarms (4 %, cost 1), looked at
    every 100 requests up to 5,000, equal expected costs. A baseline without a miss
    (e**-2 = 13.5 % of them) has no variance for the skewness rule to read: 13 % of 400
    seeded watches rolled back, exactly those. Only the cost matrix's bound tells what an
    unseen miss could cost: with it, none."""
    rng = np.random.default_rng(9)
    looks = np.arange(100, 5001, 100)
    base = _costs(rng, (400, 1000), false_alarm=0.0, miss=0.002, cost=20.0)
    new = _costs(rng, (400, 5000), false_alarm=0.04, miss=0.0, cost=20.0)
    shape = (400, looks.size)
    baseline = tuple(
        np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
        for v in unit_sums(1000.0, *((base**p).sum(axis=1, keepdims=True) for p in (1, 2, 3)))
    )
    rates = {}
    for loss_range in (None, 20.0):
        test = TwoSampleSequentialTest(alpha=0.05, planned_n=5000, min_n=500, loss_range=loss_range)
        decision = test.evaluate(baseline, _sums(new, looks)).decision
        rates[loss_range] = (decision == -1).any(axis=1).mean()  # rolled back
    assert rates[20.0] <= 0.05
    assert rates[None] > 0.08


def test_symmetric_and_loss_range_bounded_differences_decide_about_as_soon_as_before() -> None:
    """The skewness rule costs nothing where the arms are not skewed, or skewed alike, and
    the allowance of a 0-1 loss little: normal outcomes 0.1 sd apart are found at the same
    look with or without the rule, and error rates of 20 % against 18 % at most 20 % later
    with both the rule and ``loss_range=1``."""
    rng = np.random.default_rng(8)
    looks = np.arange(100, 20_001, 100)
    a, b = rng.normal(0.0, 1.0, (200, 20_000)), rng.normal(-0.1, 1.0, (200, 20_000))
    test = TwoSampleSequentialTest(alpha=0.05, planned_n=1000, min_n=500)
    plain, at_plain = _first_decisions(test, a, b, looks, cubes=False)
    skew, at_skew = _first_decisions(test, a, b, looks)
    assert (plain == 1).mean() > 0.9
    np.testing.assert_array_equal(at_skew, at_plain)
    a = (rng.random((200, 20_000)) < 0.20).astype(np.float64)
    b = (rng.random((200, 20_000)) < 0.18).astype(np.float64)
    plain, at_plain = _first_decisions(test, a, b, looks, cubes=False)
    ranged, at_ranged = _first_decisions(
        TwoSampleSequentialTest(alpha=0.05, planned_n=1000, min_n=500, loss_range=1.0),
        a,
        b,
        looks,
    )
    assert (plain == 1).mean() > 0.8
    assert (ranged == 1).mean() >= (plain == 1).mean() - 0.05
    both = (at_plain > 0) & (at_ranged > 0)
    assert np.median(at_ranged[both]) <= 1.2 * np.median(at_plain[both])


def test_the_third_cumulant_of_the_ratio_estimate_comes_from_the_unit_sums() -> None:
    """Units of several outcomes, fed in two looks: the kept sums give ``sum_u e_u**3 /
    N**3`` with ``e_u = s_u - R n_u``, the linearised estimate's third cumulant."""
    rng = np.random.default_rng(15)
    counts = rng.integers(1, 6, 50).astype(np.float64)
    sums = rng.exponential(1.0, 50) * counts
    half = counts // 2
    test = TwoSampleSequentialTest(min_n=5)
    test.update_units(challenger=UnitUpdate(np.zeros(50), np.zeros(50), half, sums * half / counts))
    test.update_units(
        challenger=UnitUpdate(half, sums * half / counts, counts - half, sums * (1 - half / counts))
    )
    arm = tuple(np.asarray(test.to_dict()["stats_with_cubes"][1]))
    ratio = sums.sum() / counts.sum()
    expected = ((sums - ratio * counts) ** 3).sum() / counts.sum() ** 3
    assert ratio_third_cumulant(arm) == pytest.approx(expected, rel=1e-9)
    single = UnitUpdate(np.zeros(4), np.zeros(4), np.ones(4), np.array([1.0, 2.0, 0.0, 5.0]))
    np.testing.assert_allclose(single.sums(), unit_sums(4, 8.0, 30.0, 134.0))


def test_loss_range_and_the_cube_sums_survive_the_state() -> None:
    rng = np.random.default_rng(16)
    original = TwoSampleSequentialTest(min_n=20, loss_range=20.0)
    for _ in range(3):
        original.update(champion=rng.exponential(size=30), challenger=rng.exponential(size=30))
    state = json.loads(json.dumps(original.to_dict(), allow_nan=False))
    assert state["config"]["loss_range"] == 20.0
    # the six sums where every reader since units were kept (and migration 0008) reads them
    assert np.asarray(state["stats"]).shape == (2, 6)
    assert np.asarray(state["stats_with_cubes"])[:, :6].tolist() == state["stats"]
    restored = TwoSampleSequentialTest.from_dict(state)
    a, b = rng.exponential(size=30), rng.exponential(size=30)
    assert restored.update(champion=a, challenger=b) == original.update(champion=a, challenger=b)


@pytest.mark.parametrize("how", ["stored-before", "updated-by-older-code"])
def test_a_state_without_current_cube_sums_goes_on_without_the_skewness_rule(how: str) -> None:
    """A state stored before the cube sums were kept, or whose six sums older code (which
    keeps ``stats_with_cubes`` as it was) has moved on since, does not know its cube sums:
    it decides as the test did before the rule, rather than guess."""
    rng = np.random.default_rng(17)
    a = _costs(rng, (1, 2000), false_alarm=0.04, miss=0.0, cost=20.0)[0]
    b = np.zeros(2000)  # no miss seen yet: looks strictly better, variance 0
    fresh = TwoSampleSequentialTest(min_n=500)
    fresh.update(champion=a[:500], challenger=b[:500])
    stale = fresh.to_dict()["stats_with_cubes"]
    fresh.update(champion=a[500:1000], challenger=b[500:1000])
    state = fresh.to_dict()
    del state["config"]["loss_range"]
    if how == "stored-before":
        del state["stats_with_cubes"]
    else:  # older code looked at 1,000 and kept the cube sums of the look at 500
        state["stats_with_cubes"] = stale
    older = TwoSampleSequentialTest.from_dict(state)
    assert older.loss_range is None
    look = older.update(champion=a[1000:], challenger=b[1000:])
    assert older.to_dict()["stats_with_cubes"] is None
    assert look.n_champion == 2000 and look.estimate == pytest.approx(-a.mean())
    assert look.decision == "challenger_better"  # as before the rule
    # The rule waits for 100 g**2 = 2,200 units (g = 4.7, the alarms' skewness).
    assert fresh.update(champion=a[1000:], challenger=b[1000:]).decision == "continue"


def test_a_state_of_one_outcome_per_unit_downgraded_and_upgraded_keeps_its_cube_sums() -> None:
    """Migration 0008's downgrade writes (n, sum, sum of squares) per arm and leaves
    ``stats_with_cubes``; untouched since, they still agree and the rule stays on."""
    rng = np.random.default_rng(18)
    test = TwoSampleSequentialTest(min_n=5)
    test.update(champion=rng.exponential(size=40), challenger=rng.exponential(size=30))
    state = test.to_dict()
    state["stats"] = [[arm[0], arm[2], arm[4]] for arm in state["stats"]]
    restored = TwoSampleSequentialTest.from_dict(state)
    assert restored.to_dict()["stats_with_cubes"] == test.to_dict()["stats_with_cubes"]


def test_invalid_loss_range_is_refused_with_the_field_named() -> None:
    with pytest.raises(StatsError, match="`loss_range` must be finite and >= 0, got -1"):
        TwoSampleSequentialTest(loss_range=-1.0)


def _normal_mixture(
    theta: float, v: float, unit: float, *, alpha: float, planned_n: int
) -> tuple[float, float]:
    """The confidence sequence's half-width and the always-valid p-value of an estimate
    ``theta`` of variance ``v``, mixing variance ``tau**2 = unit * c(alpha) / planned_n``
    (as in test_stats_paired.py)."""
    c = -2.0 * np.log(alpha) + np.log(1.0 - 2.0 * np.log(alpha))
    tau2 = unit * c / planned_n
    half = np.sqrt(v * (v + tau2) / tau2 * np.log((v + tau2) / (v * alpha**2)))
    lam = np.sqrt(v / (v + tau2)) * np.exp(theta**2 * tau2 / (2.0 * v * (v + tau2)))
    return float(half), float(min(1.0, 1.0 / lam))


def _heavy_users(rng: np.random.Generator, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """200 units of 1 to 9 outcomes each, whose per-outcome loss grows with their count
    (``shift + 0.1 n``): the unit's mean is not the arm's, so the cross term matters."""
    counts = rng.integers(1, 10, 200).astype(np.float64)
    sums = counts * (shift + 0.1 * counts) + rng.normal(0.0, 1.0, 200) * np.sqrt(counts)
    return counts, sums


def test_the_delta_method_variance_is_the_sum_of_squared_unit_residuals() -> None:
    """``K/(K-1) sum_u (s_u - R n_u)**2 / N**2`` (Deng et al. 2018), expanded over the unit
    sums as ``ss - 2 R ns + R**2 nn``: without its last two terms it was 43 % too large."""
    counts, sums = _heavy_users(np.random.default_rng(3), 0.5)
    zeros = np.zeros(200)
    ratio, var = ratio_variance(tuple(UnitUpdate(zeros, zeros, counts, sums).sums()))
    r = sums.sum() / counts.sum()
    assert float(ratio) == pytest.approx(r, rel=1e-12)
    direct = 200 / 199 * ((sums - r * counts) ** 2).sum() / counts.sum() ** 2
    assert float(var) == pytest.approx(direct, rel=1e-9)


def test_heavy_users_decide_on_the_delta_method_with_an_allowance_per_outcome() -> None:
    """Two arms of 200 heavy users (998 and 980 outcomes), loss range 2: the estimate moves
    towards 0 by ``2 log(2 / 0.05) (1/998 + 1/980) = 0.0149``, what one unseen outcome could
    add to either arm's mean (per unit, 1/200 + 1/200, it was 0.074 and hid the decision).
    Interval, p-value and Welch's columns follow from the delta-method variances."""
    rng = np.random.default_rng(3)
    (ca, sa), (cb, sb) = _heavy_users(rng, 0.5), _heavy_users(rng, 0.3)
    zeros = np.zeros(200)
    look = TwoSampleSequentialTest(loss_range=2.0).update_units(
        champion=UnitUpdate(zeros, zeros, ca, sa), challenger=UnitUpdate(zeros, zeros, cb, sb)
    )
    ra, rb = sa.sum() / ca.sum(), sb.sum() / cb.sum()
    var_a = 200 / 199 * ((sa - ra * ca) ** 2).sum() / ca.sum() ** 2
    var_b = 200 / 199 * ((sb - rb * cb) ** 2).sum() / cb.sum() ** 2
    estimate, v, unit = rb - ra, var_a + var_b, 200 * (var_a + var_b)
    allowance = 2.0 * np.log(2.0 / 0.05) * (1.0 / ca.sum() + 1.0 / cb.sum())
    assert (ca.sum(), cb.sum()) == (998, 980)
    assert allowance == pytest.approx(0.014921, abs=1e-6)
    half, _ = _normal_mixture(estimate, v, unit, alpha=0.05, planned_n=1000)
    _, p = _normal_mixture(estimate + allowance, v, unit, alpha=0.05, planned_n=1000)
    assert look.estimate == pytest.approx(estimate, rel=1e-12)
    assert look.ci_low == pytest.approx(estimate - half - allowance, rel=1e-9)
    assert look.ci_high == pytest.approx(estimate + half + allowance, rel=1e-9)
    assert look.p_value == pytest.approx(p, rel=1e-9)
    assert look.ci_high < 0 and look.decision == "challenger_better"
    # Welch on the unit variances: df = 199 (var_a + var_b)**2 / (var_a**2 + var_b**2), the
    # half-width its t quantile times the standard error
    df = 199 * (var_a + var_b) ** 2 / (var_a**2 + var_b**2)
    fixed = sps.t.isf(0.025, df) * np.sqrt(v)
    assert look.fixed_ci == pytest.approx((estimate - fixed, estimate + fixed), rel=1e-9)
    assert look.fixed_t_p == pytest.approx(2 * sps.t.sf(abs(estimate) / np.sqrt(v), df), rel=1e-9)
