from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from shadow.stats import StatsError, assign, assignment_bucket, srm_check


def test_assignment_is_a_keyed_blake2b_bucket_and_stable_across_processes() -> None:
    # Golden values: the same unit must land in the same arm on every replica, Python
    # version and restart (Python's hash() is salted per process and would not).
    digest = hashlib.blake2b(b"user-1", digest_size=8, key=b"exp-1").digest()
    assert assignment_bucket("user-1", salt="exp-1") == int.from_bytes(digest, "big") / 2**64
    assert assignment_bucket("user-1", salt="exp-1") == pytest.approx(0.584047, abs=1e-6)
    arms = [assign(f"user-{i}", salt="exp-1", percent=50) for i in range(1, 7)]
    assert arms == ["champion", "challenger", "challenger", "challenger", "challenger", "champion"]


def test_assignment_shares_follow_percent() -> None:
    keys = [f"unit-{i}" for i in range(20_000)]
    for percent in (10.0, 50.0):
        share = np.mean([assign(k, salt="s", percent=percent) == "challenger" for k in keys])
        assert share == pytest.approx(percent / 100, abs=0.01)
    assert {assign(k, salt="s", percent=0) for k in keys[:500]} == {"champion"}
    assert {assign(k, salt="s", percent=100) for k in keys[:500]} == {"challenger"}


def test_raising_percent_only_moves_units_towards_the_challenger() -> None:
    keys = [f"unit-{i}" for i in range(2000)]
    at10 = {k for k in keys if assign(k, salt="ramp", percent=10) == "challenger"}
    at30 = {k for k in keys if assign(k, salt="ramp", percent=30) == "challenger"}
    assert at10 <= at30


def test_a_new_salt_reshuffles_units() -> None:
    keys = [f"unit-{i}" for i in range(5000)]
    a = np.array([assignment_bucket(k, salt="exp-1") < 0.5 for k in keys])
    b = np.array([assignment_bucket(k, salt="exp-2") < 0.5 for k in keys])
    assert np.mean(a == b) == pytest.approx(0.5, abs=0.03)


def test_assignment_arguments_are_validated() -> None:
    with pytest.raises(StatsError, match=r"`percent` must be in \[0, 100\], got 150"):
        assign("u", salt="s", percent=150)
    with pytest.raises(StatsError, match="`salt` must be a non-empty string"):
        assign("u", salt="", percent=50)


def test_srm_fires_on_a_52_48_split_at_20000() -> None:
    result = srm_check(9600, 10400, 0.5)
    assert result.chi2 == pytest.approx(32.0)
    assert result.p_value < 0.001
    assert result.mismatch
    assert result.observed_share == pytest.approx(0.52)


def test_srm_at_10000_a_52_48_split_is_not_yet_evidence_at_any_look() -> None:
    """Chi-square's fixed-horizon p-value (6e-5) is reported beside; the decision uses
    the always-valid one, which a 52/48 split of 10,000 units does not cross."""
    result = srm_check(4800, 5200, 0.5)
    assert result.fixed_p_value == pytest.approx(6.3e-5, rel=0.01)
    assert 0.001 < result.p_value < 0.01
    assert not result.mismatch


def test_srm_rarely_fires_on_fair_50_50_splits() -> None:
    rng = np.random.default_rng(123)
    treated = rng.binomial(10_000, 0.5, size=1000)
    alarms = sum(srm_check(10_000 - int(t), int(t), 0.5).mismatch for t in treated)
    assert alarms / 1000 <= 0.01


def test_srm_checked_at_every_look_keeps_false_alarms_under_alpha() -> None:
    """A/A: 300 fair splits, each checked after every 50 units for 200 looks. Chi-square
    at alpha 0.01 looked at this often raised a mismatch in 14 % of them; the mixture
    test's p-value is valid at every look at once (Ville's inequality)."""
    rng = np.random.default_rng(7)
    treated = rng.binomial(50, 0.5, size=(300, 200)).cumsum(axis=1)
    totals = 50 * np.arange(1, 201)
    ever = [
        any(
            srm_check(int(n - t), int(t), 0.5, alpha=0.01).mismatch
            for t, n in zip(row, totals, strict=True)
        )
        for row in treated
    ]
    assert np.mean(ever) <= 0.01


def test_srm_finds_a_40_60_split_within_a_thousand_units() -> None:
    rng = np.random.default_rng(11)
    found = []
    for _ in range(50):
        treated = rng.binomial(50, 0.4, size=20).cumsum()
        looks = [
            srm_check(int(n - t), int(t), 0.5).mismatch
            for t, n in zip(treated, 50 * np.arange(1, 21), strict=True)
        ]
        found.append(looks.index(True) if True in looks else None)
    assert None not in found
    assert np.median(found) * 50 + 50 <= 800


def test_srm_handles_unequal_expected_shares() -> None:
    assert not srm_check(9000, 1000, 0.1).mismatch
    assert srm_check(8800, 1200, 0.1).mismatch


def test_srm_chi_square_at_an_unequal_split_matches_the_hand_computed_value() -> None:
    """10,000 units expected 9,000 / 1,000: (1200 - 1000)**2 / 1000 + (8800 - 9000)**2 / 9000
    = 40 + 4.444, each arm's squared deviation over its own expected count."""
    result = srm_check(8800, 1200, 0.1)
    assert result.chi2 == pytest.approx(400.0 / 9.0, rel=1e-12)
    reference = sps.chisquare([8800, 1200], f_exp=[9000, 1000])
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12)
    assert result.fixed_p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (result.observed_share, result.expected_share) == (0.12, 0.1)


def _beta_binomial_p(n_control: int, n_treatment: int, share: float) -> float:
    """``min(1, 1 / Bayes factor)`` of a ``Beta(100 share, 100 (1 - share))`` mixture on the
    treatment's share against ``share`` (Lindon & Malek 2022), by scipy's log beta."""
    a, b = 100.0 * share, 100.0 * (1.0 - share)
    log_bf = (
        special.betaln(a + n_treatment, b + n_control)
        - special.betaln(a, b)
        - n_treatment * math.log(share)
        - n_control * math.log(1.0 - share)
    )
    return min(1.0, math.exp(-log_bf))


def test_srm_flags_a_p_value_at_or_below_alpha() -> None:
    """A 48.45/51.55 split of 20,000 units has an always-valid p of 0.000998, just under
    the default alpha of 0.001: a mismatch. A p-value equal to alpha is one too."""
    result = srm_check(9690, 10310, 0.5)
    assert result.p_value == pytest.approx(_beta_binomial_p(9690, 10310, 0.5), rel=1e-9)
    assert 0.0009 < result.p_value <= 0.001
    assert result.mismatch
    assert srm_check(9690, 10310, 0.5, alpha=result.p_value).mismatch
    assert not srm_check(9700, 10300, 0.5).mismatch  # p = 0.0018


def test_srm_arguments_are_validated() -> None:
    with pytest.raises(StatsError, match=r"`expected_share` must be in \(0, 1\), got 1.0"):
        srm_check(10, 10, 1.0)
    with pytest.raises(StatsError, match="positive total"):
        srm_check(0, 0, 0.5)
    with pytest.raises(StatsError, match=r"`concentration` must be > 0, got 0"):
        srm_check(10, 10, 0.5, concentration=0)
