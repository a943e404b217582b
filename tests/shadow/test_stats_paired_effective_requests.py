"""The paired test's burn-in counts the requests that carry the estimate: Kish's effective
number of requests, ``(sum rows)**2 / sum rows**2``. Counted as requests, one-row traffic
with rare 4,000-row batch requests met a burn-in of 500 while one batch request held most
of the rows, and an exchangeable challenger was decided on in 10-23 % of seeded runs."""

from __future__ import annotations

import numpy as np
import pytest

from shadow.stats import PairedSequentialTest

BIG = 4000  # rows of a rare batch request (under server.max_batch_rows 4096)


def _mixed_stream(
    rng: np.random.Generator, requests: int, *, big_share: float = 0.002
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-request row counts (one row, or ``BIG`` with probability ``big_share``), and
    per-row loss differences of two exchangeable models with the request of each row: a
    seeded coin per request decides which model answers as the challenger, and the
    request's segment shifts both (as tests/shadow/test_stats_paired_clustered.py)."""
    rows = np.where(rng.random(requests) < big_share, BIG, 1)
    coin = np.where(rng.random(requests) < 0.5, 1.0, -1.0)
    segment = rng.normal(0.05, 0.1, requests)
    labels = np.repeat(np.arange(requests), rows)
    d = coin[labels] * (segment[labels] + rng.normal(0.0, 0.3, labels.size))
    return rows, d, labels


def test_an_equal_challenger_on_rare_large_batch_requests_is_rarely_decided_on() -> None:
    """A/A: 250 seeded streams of 2,000 requests, 0.2 % of them with 4,000 rows, a look
    every 50 requests at the daemon's defaults (alpha 0.05, min_n 500, planned_n 1000)."""
    rng = np.random.default_rng(11)
    runs, requests, every = 250, 2000, 50
    decided = 0
    for _ in range(runs):
        rows, d, labels = _mixed_stream(rng, requests)
        ends = np.concatenate([[0], np.cumsum(rows)])
        test = PairedSequentialTest(alpha=0.05, planned_n=1000, min_n=500, bootstrap_resamples=0)
        for first in range(0, requests, every):
            part = slice(ends[first], ends[first + every])
            look = test.update(d[part], requests=labels[part])
            if look.decision != "continue":
                decided += 1
                break
    assert decided / runs <= 0.05


def test_one_dominant_batch_request_does_not_meet_the_burn_in() -> None:
    """600 one-row requests and one of 4,000 rows: 601 requests, but the batch request
    holds 87 % of the rows, so the estimate rests on about 1.3 requests. The batch
    request's mean is the one-row requests' (its residual is 0, so the skewness rule
    passes): counted as 601 requests, the look decided at once."""
    rng = np.random.default_rng(5)
    test = PairedSequentialTest(min_n=500, bootstrap_resamples=0)
    small = -0.5 + rng.normal(0.0, 0.05, 600)
    big = rng.normal(0.0, 0.05, BIG)
    d = np.concatenate([small, big - big.mean() + small.mean()])
    labels = np.concatenate([np.arange(600), np.full(BIG, 600)])
    look = test.update(d, requests=labels)
    assert (look.n, test.rows) == (601, 600 + BIG)
    assert test.effective_n == (600 + BIG) ** 2 / (600 + BIG**2)
    assert PairedSequentialTest.effective_n_in(test.to_dict()) == test.effective_n
    assert look.decision == "continue" and look.p_value == 1.0
    assert (look.ci_low, look.ci_high) == (-np.inf, np.inf)
    # the same rows, one request each, do decide
    alone = PairedSequentialTest(min_n=500, bootstrap_resamples=0)
    assert alone.update(d).decision == "challenger_better"
    assert alone.effective_n == alone.n == 600 + BIG


def test_the_allowance_divides_by_the_effective_requests() -> None:
    """``loss_range * log(2/alpha) / n_eff``: a rare difference bounded by the loss range
    is one the effective requests may not have shown, however many rows they carry."""
    test = PairedSequentialTest(min_n=2, loss_range=1.0, bootstrap_resamples=0)
    sums = (4.0, 40.0, 0.0, 10.0 * 10.0 * 4, 4.0, 0.0)  # four requests of ten rows
    equal = test.evaluate_requests(tuple(np.asarray(v) for v in sums))
    plain = PairedSequentialTest(min_n=2, loss_range=None, bootstrap_resamples=0)
    base = plain.evaluate_requests(tuple(np.asarray(v) for v in sums))
    widened = float(equal.ci_high) - float(base.ci_high)
    assert widened == pytest.approx(np.log(2.0 / 0.05) / 4.0, rel=1e-12)


def test_effective_requests_of_a_state_without_request_sums_are_its_rows() -> None:
    """A state stored before requests were the unit is one row per request: its
    effective requests are its requests, as its burn-in counted them."""
    test = PairedSequentialTest(min_n=30, bootstrap_resamples=0)
    test.update(np.random.default_rng(1).normal(0.0, 0.5, 400))
    state = test.to_dict()
    del state["units"]
    assert PairedSequentialTest.effective_n_in(state) == 400
    assert PairedSequentialTest.from_dict(state).effective_n == 400
