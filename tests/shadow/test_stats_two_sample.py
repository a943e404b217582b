from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from shadow.stats import StatsError, TwoSampleSequentialTest


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
