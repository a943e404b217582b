"""The paired test's unit is the request: a batch request's rows share what the request
shares (its traffic segment, its client), so they are not independent observations.
Counted as such, 100-row requests from shifted segments reached the burn-in of 500 after 5
requests, and an exchangeable challenger was promoted in 18 % of seeded runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from shadow.stats import PairedSequentialTest

ROWS = 100  # rows per request


def _clustered(rng: np.random.Generator, requests: int, *, rows: int = ROWS) -> np.ndarray:
    """Per-row loss differences of two exchangeable models on ``requests`` batch requests,
    ``[requests, rows]``: a seeded coin per request decides which model answers as the
    challenger, and each request's segment shifts how far apart the two are (its rows
    share that shift). The true mean difference is 0."""
    coin = np.where(rng.random(requests) < 0.5, 1.0, -1.0)
    segment = rng.normal(0.05, 0.1, requests)
    noise = rng.normal(0.0, 0.3, (requests, rows))
    return coin[:, None] * (segment[:, None] + noise)


def _labels(first: int, requests: int, rows: int = ROWS) -> np.ndarray:
    """The request each row belongs to: ``rows`` rows per request, from ``first``."""
    return np.repeat(np.arange(first, first + requests), rows)


def test_an_equal_challenger_on_batch_requests_is_rarely_called_better() -> None:
    """A/A: 200 seeded streams of 100-row requests, a look every 20 requests up to 400,
    burn-in 100 requests. Rows counted as observations, the burn-in was reached on the
    first look and most streams decided; per request the rate is at most alpha."""
    rng = np.random.default_rng(2024)
    decided = 0
    for _ in range(200):
        test = PairedSequentialTest(planned_n=300, min_n=100, bootstrap_resamples=0)
        d = _clustered(rng, 400)
        for first in range(0, 400, 20):
            look = test.update(d[first : first + 20].ravel(), requests=_labels(first, 20))
            if look.decision != "continue":
                decided += 1
                break
        else:
            assert look.n == 400 and test.rows == 400 * ROWS
    assert decided / 200 <= 0.05


def test_a_real_difference_on_batch_requests_is_still_found() -> None:
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(20):
        test = PairedSequentialTest(planned_n=300, min_n=100, bootstrap_resamples=0)
        d = _clustered(rng, 400) - 0.1
        for first in range(0, 400, 20):
            look = test.update(d[first : first + 20].ravel(), requests=_labels(first, 20))
            if look.decision != "continue":
                assert look.decision == "challenger_better" and look.n >= 100
                found += 1
                break
    assert found >= 18


def test_looks_before_min_n_requests_never_decide() -> None:
    """However many rows they carry: 60 requests of 50 rows, each far better, do not
    reach a burn-in of 100 requests."""
    test = PairedSequentialTest(min_n=100, bootstrap_resamples=0)
    d = -1.0 + np.random.default_rng(3).normal(0.0, 0.01, 60 * 50)
    look = test.update(d, requests=_labels(0, 60, 50))
    assert (look.n, test.rows) == (60, 3000)
    assert look.decision == "continue" and look.p_value == 1.0
    assert (look.ci_low, look.ci_high) == (-np.inf, np.inf)
    look = test.update(d, requests=_labels(60, 60, 50))
    assert look.n == 120 and look.decision == "challenger_better"


def test_the_estimate_is_the_mean_per_row_with_a_variance_over_requests() -> None:
    """Requests of unequal size: the estimate is ``sum d / rows``, its variance the
    delta-method (cluster-robust) one over the ``K`` requests,
    ``K/(K-1) * sum_i (s_i - R m_i)^2 / N^2``, and the fixed-horizon t has ``K - 1``
    degrees of freedom."""
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 40, 300)
    labels = np.repeat(np.arange(300), sizes)
    shift = rng.normal(0.0, 0.2, 300)
    d = shift[labels] + rng.normal(-0.02, 0.5, labels.size)
    order = rng.permutation(labels.size)  # a request's rows need not be adjacent
    test = PairedSequentialTest(min_n=30, bootstrap_resamples=0)
    look = test.update(d[order], requests=labels[order] * 7 + 3)  # any integer labels
    s = np.bincount(labels, weights=d)
    ratio = d.sum() / d.size
    var = 300 / 299 * np.sum((s - ratio * sizes) ** 2) / d.size**2
    assert (look.n, test.rows) == (300, d.size)
    assert look.estimate == pytest.approx(ratio, rel=1e-12)
    half = sps.t.ppf(0.975, 299) * np.sqrt(var)
    assert look.fixed_ci == pytest.approx((ratio - half, ratio + half), rel=1e-9)
    t = ratio / np.sqrt(var)
    assert look.fixed_t_p == pytest.approx(2 * sps.t.sf(abs(t), 299), rel=1e-9)


def test_one_row_per_request_gives_exactly_the_looks_of_rows() -> None:
    """Batch-1 traffic (every row its own request) looks as it did before requests were
    the unit, whether the requests are named or not."""
    d = np.random.default_rng(5).normal(-0.03, 0.5, 3000)
    named = PairedSequentialTest(planned_n=500, seed=1)
    plain = PairedSequentialTest(planned_n=500, seed=1)
    for first in range(0, 3000, 300):
        batch = d[first : first + 300]
        assert named.update(batch, requests=np.arange(first, first + 300)) == plain.update(batch)
    assert named.to_dict() == plain.to_dict()


def test_request_state_round_trips_and_continues_identically() -> None:
    rng = np.random.default_rng(9)
    test = PairedSequentialTest(planned_n=300, min_n=50, seed=4)
    d = _clustered(rng, 120) - 0.05
    test.update(d[:60].ravel(), requests=_labels(0, 60))
    state = json.loads(json.dumps(test.to_dict(), allow_nan=False))
    resumed = PairedSequentialTest.from_dict(state)
    assert (resumed.n, resumed.rows) == (60, 60 * ROWS)
    after, labels = d[60:].ravel(), _labels(60, 60)
    assert resumed.update(after, requests=labels) == test.update(after, requests=labels)
    assert resumed.to_dict() == test.to_dict()


def test_a_state_stored_before_requests_were_kept_goes_on_one_row_per_request() -> None:
    """Its sums are of rows; each becomes a request of one row (what that test assumed),
    and later requests are counted as requests."""
    d = np.random.default_rng(1).normal(-0.02, 0.5, 400)
    test = PairedSequentialTest(min_n=30, bootstrap_resamples=0)
    test.update(d)
    state = test.to_dict()
    del state["units"]
    older = PairedSequentialTest.from_dict(state)
    assert (older.n, older.rows) == (400, 400)
    look = older.update(np.zeros(50), requests=np.repeat([0, 1], 25))
    assert (look.n, older.rows) == (402, 450)
    # ... and a state whose row sums moved on without its request sums (updated by code
    # that did not keep them) goes on from its row sums alike
    state = test.to_dict()
    state["n"], state["total"] = 401, state["total"] + 0.5
    stale = PairedSequentialTest.from_dict(state)
    assert (stale.n, stale.rows) == (401, 401)


def test_the_bootstrap_interval_is_of_the_ratio_the_estimate_is() -> None:
    """Requests of very unequal size whose per-row difference depends on their size: the
    per-row mean (the estimate) and the mean of request means lie far apart, and the
    bootstrap interval is about the former. It resampled request means unweighted by their
    rows, an interval of the other quantity."""
    rng = np.random.default_rng(3)
    sizes = np.where(rng.random(400) < 0.5, 1, 50)
    labels = np.repeat(np.arange(400), sizes)
    # large requests: the challenger better by 0.2 a row; single rows: worse by 0.2
    d = np.where(sizes[labels] == 50, -0.2, 0.2) + rng.normal(0.0, 0.05, labels.size)
    test = PairedSequentialTest(min_n=30, bootstrap_resamples=400, seed=0)
    look = test.update(d, requests=labels)
    per_row = d.sum() / d.size
    per_request = float(np.mean(np.bincount(labels, weights=d) / sizes))
    assert per_row < -0.15 and per_request > -0.05  # the two quantities differ
    assert look.estimate == pytest.approx(per_row, rel=1e-12)
    assert look.bootstrap_ci is not None
    low, high = look.bootstrap_ci
    assert low < per_row < high
    assert high < -0.1
