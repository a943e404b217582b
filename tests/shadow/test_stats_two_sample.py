from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from shadow.stats import StatsError, TwoSampleSequentialTest, UnitUpdate


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
