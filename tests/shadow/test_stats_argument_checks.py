"""Public helpers of :mod:`shadow.stats` refuse arguments outside their domain with a
:class:`~shadow.stats.StatsError` naming the argument, where they answered a number:
``wilson_interval(0, 0)`` raised ZeroDivisionError, and ``obrien_fleming_spending(1.5)``
spent 0.134 of an alpha of 0.05, more than the whole alpha."""

from __future__ import annotations

import math

import pytest

from shadow.stats import StatsError, obrien_fleming_spending, wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "rule"),
    [
        pytest.param(0, 0, "`trials` must be an integer >= 1", id="no-trials"),
        pytest.param(-1, 10, r"`successes` must be in \[0, trials\]", id="negative"),
        pytest.param(11, 10, r"`successes` must be in \[0, trials\]", id="more-than-trials"),
    ],
)
def test_wilson_interval_refuses_counts_outside_a_binomial(
    successes: int, trials: int, rule: str
) -> None:
    with pytest.raises(StatsError, match=rule):
        wilson_interval(successes, trials)


def test_wilson_interval_of_counts_within_is_a_probability_interval() -> None:
    low, high = wilson_interval(3, 100)
    assert 0.0 <= low < 0.03 < high <= 1.0


@pytest.mark.parametrize(
    "fraction", [0.0, -0.1, 1.5, math.nan], ids=["zero", "negative", "past-one", "nan"]
)
def test_spending_refuses_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(StatsError, match=r"`fraction` must be in \(0, 1\]"):
        obrien_fleming_spending(fraction, alpha=0.05)


def test_spending_refuses_an_alpha_outside_0_1() -> None:
    with pytest.raises(StatsError, match="alpha"):
        obrien_fleming_spending(0.5, alpha=1.5)


def test_spending_by_the_last_look_is_the_whole_alpha() -> None:
    assert float(obrien_fleming_spending(1.0, alpha=0.05)) == pytest.approx(0.05)
    assert float(obrien_fleming_spending(0.5, alpha=0.05)) < 0.05
